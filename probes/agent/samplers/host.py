"""Host facts: OS, CPUs, memory, load, uptime, agent and Python versions."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from probes.agent import VERSION
from probes.agent.samplers import Observations, Row


def _meminfo_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_facts(hostname: str) -> Row:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "hostname": hostname,
        "os": platform.platform(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": _meminfo_bytes("MemTotal"),
        "memory_available_bytes": _meminfo_bytes("MemAvailable"),
        "load_avg_1m": load[0],
        "agent_version": VERSION,
        "python": sys.version.split()[0],
    }


class HostSampler:
    name = "host"

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    def sample(self, now_s: float) -> Observations:
        return Observations(host=host_facts(self.hostname))

    def close(self) -> None:
        pass
