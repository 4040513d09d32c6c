"""GPU samples from a dcgm-exporter `/metrics` endpoint (default fields + profiling fields).

Labels: `UUID`, `gpu` (index), `modelName`, `Hostname`/`hostname`; a MIG instance adds
`GPU_I_ID` and is reported as its own GPU with `mig_parent_uuid`. Units are converted to
ours: frame-buffer MiB -> bytes, energy mJ -> J, utilisation % as is, profiling ratios 0..1.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from probes.agent.samplers import Observations, Once, Row

MIB = 1024 * 1024
# dcgm-exporter field -> (our sample field, multiplier)
SAMPLE_FIELDS: dict[str, tuple[str, float]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("util_pct", 1.0),
    "DCGM_FI_DEV_FB_USED": ("mem_used_bytes", MIB),
    "DCGM_FI_DEV_POWER_USAGE": ("power_w", 1.0),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_j", 0.001),
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", 1.0),
    "DCGM_FI_DEV_GPU_TEMP": ("temperature_c", 1.0),
    "DCGM_FI_PROF_SM_ACTIVE": ("sm_active", 1.0),
    "DCGM_FI_PROF_SM_OCCUPANCY": ("sm_occupancy", 1.0),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("tensor_active", 1.0),
    "DCGM_FI_PROF_DRAM_ACTIVE": ("dram_active", 1.0),
    # Graphics-engine activity (0..1): the utilisation of a MIG instance, which has no GPU_UTIL.
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": ("_gr_engine_active", 1.0),
}
MEMORY_FIELDS = ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED")


def gpu_identity(labels: dict[str, str]) -> tuple[str, str | None] | None:
    """(uuid, parent uuid) of the series' GPU or MIG instance; None without a UUID label."""
    uuid = labels.get("UUID") or labels.get("uuid")
    if not uuid:
        return None
    instance = labels.get("GPU_I_ID")
    if instance:
        return f"{uuid}/gi{instance}", uuid
    return uuid, None


def parse_dcgm(text: str, now_s: float) -> Observations:
    """Observations from one dcgm-exporter scrape (raises ValueError on malformed text)."""
    per_gpu: dict[str, Row] = {}
    inventory: dict[str, Row] = {}
    memory: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            identity = gpu_identity(sample.labels)
            if identity is None:
                continue
            uuid, parent = identity
            if uuid not in inventory:
                index = sample.labels.get("GPU_I_ID") if parent else sample.labels.get("gpu")
                inventory[uuid] = {
                    "uuid": uuid,
                    "index": int(index) if index and index.isdigit() else 0,
                    "name": sample.labels.get("modelName") or "unknown",
                    "memory_bytes": 0,
                }
                if parent:
                    inventory[uuid]["mig_parent_uuid"] = parent
            # The family's name: the parser appends `_total` to counter samples' names.
            name = family.name
            if name in MEMORY_FIELDS:
                memory[uuid] = memory.get(uuid, 0.0) + float(sample.value) * MIB
            if name in SAMPLE_FIELDS:
                field, factor = SAMPLE_FIELDS[name]
                row = per_gpu.setdefault(uuid, {"gpu_uuid": uuid, "ts": now_s})
                row[field] = float(sample.value) * factor
    observations = Observations()
    for uuid, gpu in inventory.items():
        gpu["memory_bytes"] = int(memory.get(uuid, 0.0))
        observations.gpus.append(gpu)
    for row in per_gpu.values():
        engine_active = row.pop("_gr_engine_active", None)
        if "util_pct" not in row and engine_active is not None:
            row["util_pct"] = engine_active * 100.0
        if "util_pct" not in row or "mem_used_bytes" not in row:
            continue  # not enough for a sample (e.g. a MIG instance without profiling)
        row["mem_used_bytes"] = int(row["mem_used_bytes"])
        row["util_pct"] = min(100.0, max(0.0, row["util_pct"]))
        observations.gpu_samples.append(row)
    return observations


class DcgmSampler:
    name = "dcgm"

    def __init__(self, url: str, client: httpx.Client) -> None:
        self.url = url
        self._client = client
        self._once = Once()

    def sample(self, now_s: float) -> Observations:
        try:
            response = self._client.get(self.url)
            response.raise_for_status()
            observations = parse_dcgm(response.text, now_s)
        except (httpx.HTTPError, ValueError) as exc:
            observations = Observations()
            self._once.say(observations, f"dcgm-exporter at {self.url} unavailable: {exc}")
            return observations
        self._once.say(observations, None)
        return observations

    def close(self) -> None:
        pass


def merge_gpu_samples(primary: list[Row], secondary: list[Row]) -> list[Row]:
    """NVML samples completed by DCGM's (profiling fields); DCGM alone where NVML has none."""
    by_uuid = {row["gpu_uuid"]: row for row in primary}
    merged = list(primary)
    for row in secondary:
        mine = by_uuid.get(row["gpu_uuid"])
        if mine is None:
            merged.append(row)
            continue
        for key, value in row.items():
            if mine.get(key) is None:
                mine[key] = value
    return merged
