"""Board power per hardware kind (idle and full load), for energy per token.

Full-load figures are the vendors' maximum board power (TDP); idle figures are estimates of
what `nvidia-smi` shows for an idle, initialised board, flagged as such. A scenario's `power`
entries override both. The fleet model draws idle power for every billed GPU and adds
(max - idle) x busy fraction for serving ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from advisor.engine.scenario import PowerEntry

_IDLE = "idle: estimate of an idle initialised board (nvidia-smi), not measured here"

POWER: Mapping[str, PowerEntry] = MappingProxyType(
    {
        "A100-40GB": PowerEntry(50.0, 400.0, f"NVIDIA A100 SXM4 datasheet 400 W; {_IDLE}"),
        "A100-80GB": PowerEntry(60.0, 400.0, f"NVIDIA A100 SXM4 datasheet 400 W; {_IDLE}"),
        "H100-SXM": PowerEntry(70.0, 700.0, f"NVIDIA H100 SXM5 datasheet 700 W; {_IDLE}"),
        "H100-PCIe": PowerEntry(50.0, 350.0, f"NVIDIA H100 PCIe datasheet 350 W; {_IDLE}"),
        "H200-SXM": PowerEntry(75.0, 700.0, f"NVIDIA H200 SXM datasheet 700 W; {_IDLE}"),
        "L4": PowerEntry(16.0, 72.0, f"NVIDIA L4 datasheet 72 W; {_IDLE}"),
        "L40S": PowerEntry(35.0, 350.0, f"NVIDIA L40S datasheet 350 W; {_IDLE}"),
        "A10G": PowerEntry(25.0, 300.0, f"AWS A10G board power 300 W (not checked); {_IDLE}"),
        "B200": PowerEntry(140.0, 1000.0, f"NVIDIA B200 (HGX) 1000 W; {_IDLE}"),
        "CPU-DEV-2C": PowerEntry(5.0, 30.0, "nominal share of a 2-vCPU VM (estimate)"),
    }
)

UNKNOWN = PowerEntry(0.0, 1.0, "no power figure for this hardware: energy is not meaningful")


def board_power(hardware_name: str, overrides: Mapping[str, PowerEntry]) -> PowerEntry:
    """The scenario's override for this hardware, else the built-in figure."""
    for key, entry in overrides.items():
        if key.strip().lower() == hardware_name.strip().lower():
            return entry
    return POWER.get(hardware_name, UNKNOWN)
