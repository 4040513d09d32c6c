"""Samplers: NVML without a GPU (real pynvml here), NVML's GPU path, DCGM and vLLM scrapes."""

import json
import logging
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import cast

import httpx
import pytest

from probes.agent.batch import BatchBuilder
from probes.agent.config import AgentConfig, VllmTarget
from probes.agent.runner import Agent
from probes.agent.samplers import Sampler
from probes.agent.samplers.dcgm import merge_gpu_samples, parse_dcgm
from probes.agent.samplers.host import HostSampler
from probes.agent.samplers.nvml import NvmlSampler
from probes.agent.samplers.vllm import VllmSampler
from probes.agent.spool import Spool
from tests.probes.agent.stub_http import serving, text

DATA = Path(__file__).parent / "data"
IDLE = (DATA / "vllm-0.32-idle.txt").read_text()
AFTER = (DATA / "vllm-0.32-after-5-requests.txt").read_text()
DCGM = """\
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 87
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 3
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 70000
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-b",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 1000
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-a",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 11559
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-a",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 612.5
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-a",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 123456789
# TYPE DCGM_FI_PROF_SM_ACTIVE gauge
DCGM_FI_PROF_SM_ACTIVE{gpu="0",UUID="GPU-a",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 0.41
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-a",GPU_I_ID="3",GPU_I_PROFILE="1g.10gb",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 0.25
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",GPU_I_ID="3",modelName="NVIDIA H100 80GB HBM3",Hostname="node-1"} 2048
"""  # noqa: E501


def test_it_says_once_that_nvml_is_unavailable_here() -> None:
    sampler = NvmlSampler()  # the real nvidia-ml-py: no driver or GPU on this machine
    first = sampler.sample(100.0)
    assert len(first.notes) == 1
    assert "NVML unavailable" in first.notes[0]
    assert "other samplers keep running" in first.notes[0]
    assert first.gpu_samples == []
    assert first.host == {"nvml": sampler.status}
    again = sampler.sample(101.0)
    assert again.notes == []
    assert again.gpu_samples == []


def test_the_other_samplers_keep_running_without_nvml(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving({("GET", "/metrics"): text(AFTER)}) as url:
        client = httpx.Client()
        config = AgentConfig(hostname="node-1", spool_dir=tmp_path)
        samplers: list[Sampler] = [
            NvmlSampler(),
            VllmSampler(VllmTarget(url=url), client, "node-1"),
        ]
        agent = Agent(config, samplers, HostSampler("node-1"), Spool(tmp_path, 2**20), None)
        with caplog.at_level(logging.WARNING):
            for round_s in (1000.0, 1001.0, 1002.0):
                agent.sample_round(round_s)
    nvml_notes = [r for r in caplog.records if "NVML unavailable" in r.getMessage()]
    assert len(nvml_notes) == 1
    assert agent.stats.engine_samples == 3
    assert agent.stats.task_errors == {}


class FakeNvml(SimpleNamespace):
    """The slice of pynvml the sampler calls, for one H100 and one MIG-enabled A100."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    class NVMLError_NotFound(NVMLError):
        pass

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0
    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self) -> None:
        super().__init__()
        self.devices = {
            0: {"uuid": b"GPU-h100", "name": "NVIDIA H100 80GB HBM3", "total": 85_899_345_920,
                "used": 10 * 2**30, "util": 73, "power": 412_000, "energy": 9_000_000,
                "clock": 1980, "temp": 61, "mig": (0, 0)},
            1: {"uuid": "GPU-a100", "name": "NVIDIA A100-SXM4-40GB", "total": 42_949_672_960,
                "used": 2 * 2**30, "util": None, "power": None, "energy": None, "clock": 1410,
                "temp": 40, "mig": (1, 1)},
        }  # fmt: skip
        self.mig = {("GPU-a100", 0): {"uuid": "MIG-1", "name": "A100 MIG 3g.20gb",
                                      "total": 20 * 2**30, "used": 2**30}}  # fmt: skip

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "575.51"

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict:
        return self.devices[index]

    def nvmlDeviceGetUUID(self, handle: dict) -> str:
        return handle["uuid"]

    def nvmlDeviceGetName(self, handle: dict) -> str:
        return handle["name"]

    def nvmlDeviceGetMemoryInfo(self, handle: dict) -> SimpleNamespace:
        return SimpleNamespace(total=handle["total"], used=handle["used"])

    def _value(self, handle: dict, key: str) -> int:
        if handle.get(key) is None:
            raise self.NVMLError_NotSupported("Not Supported")
        return handle[key]

    def nvmlDeviceGetUtilizationRates(self, handle: dict) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._value(handle, "util"), memory=0)

    def nvmlDeviceGetPowerUsage(self, handle: dict) -> int:
        return self._value(handle, "power")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: dict) -> int:
        return self._value(handle, "energy")

    def nvmlDeviceGetClockInfo(self, handle: dict, _kind: int) -> int:
        return self._value(handle, "clock")

    def nvmlDeviceGetTemperature(self, handle: dict, _kind: int) -> int:
        return self._value(handle, "temp")

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict) -> list:
        return [SimpleNamespace(pid=4242, usedGpuMemory=9 * 2**30)] if handle.get("util") else []

    def nvmlDeviceGetMigMode(self, handle: dict) -> tuple[int, int]:
        return handle["mig"]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: dict) -> int:
        return 2

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: dict, index: int) -> dict:
        found = self.mig.get((handle["uuid"], index))
        if found is None:
            raise self.NVMLError_NotFound("Not Found")
        return found


def test_it_reads_gpus_and_mig_instances_through_nvml() -> None:
    observations = NvmlSampler(nvml=cast(ModuleType, FakeNvml())).sample(500.0)
    assert observations.notes == ["NVML ok: 2 GPU(s), driver 575.51"]
    assert [g["uuid"] for g in observations.gpus] == ["GPU-h100", "GPU-a100", "MIG-1"]
    assert observations.gpus[2]["mig_parent_uuid"] == "GPU-a100"
    assert observations.gpus[2]["memory_bytes"] == 20 * 2**30
    # The A100 answers NotSupported for utilisation: no sample, not a crash.
    assert observations.gpu_samples == [
        {"gpu_uuid": "GPU-h100", "ts": 500.0, "util_pct": 73.0, "mem_used_bytes": 10 * 2**30,
         "power_w": 412.0, "energy_j": 9000.0, "sm_clock_mhz": 1980.0, "temperature_c": 61.0}
    ]  # fmt: skip
    assert observations.host is not None
    assert observations.host["gpu_processes"]["GPU-h100"] == [
        {"pid": 4242, "used_memory_bytes": 9 * 2**30}
    ]


def test_it_reads_dcgm_exporter_fields_in_our_units() -> None:
    observations = parse_dcgm(DCGM, 10.0)
    by_uuid = {g["uuid"]: g for g in observations.gpus}
    assert by_uuid["GPU-a"]["memory_bytes"] == (70000 + 11559) * 2**20
    assert by_uuid["GPU-a/gi3"]["mig_parent_uuid"] == "GPU-a"
    samples = {s["gpu_uuid"]: s for s in observations.gpu_samples}
    assert samples["GPU-a"] == {
        "gpu_uuid": "GPU-a", "ts": 10.0, "util_pct": 87.0, "mem_used_bytes": 70000 * 2**20,
        "power_w": 612.5, "energy_j": 123456.789, "sm_active": 0.41,
    }  # fmt: skip
    # A MIG instance has no GPU_UTIL: its graphics-engine activity stands in.
    assert samples["GPU-a/gi3"]["util_pct"] == 25.0
    merged = merge_gpu_samples(
        [{"gpu_uuid": "GPU-a", "ts": 10.0, "util_pct": 90.0, "mem_used_bytes": 1,
          "sm_active": None}],
        observations.gpu_samples,
    )  # fmt: skip
    assert merged[0]["util_pct"] == 90.0  # NVML wins where it has a value
    assert merged[0]["sm_active"] == 0.41  # DCGM fills what NVML lacks
    assert {s["gpu_uuid"] for s in merged} == {"GPU-a", "GPU-b", "GPU-a/gi3"}


def test_it_turns_vllm_scrapes_into_engine_samples_with_rates() -> None:
    texts = iter([IDLE, AFTER])
    models = json.dumps({"data": [{"id": "tiny-llama", "root": "/models/tiny"}]})
    with serving(
        {
            ("GET", "/metrics"): lambda r: text(next(texts))(r),
            ("GET", "/v1/models"): text(models, content_type="application/json"),
        }
    ) as url:
        sampler = VllmSampler(VllmTarget(url=url), httpx.Client(), "node-1", 10.0)
        first = sampler.sample(100.0)
        second = sampler.sample(105.0)
    row = first.engine_samples[0]
    assert row["served_name"] == "tiny-llama"
    assert row["instance"] == f"node-1:{url.rsplit(':', 1)[1]}"
    assert "generation_tokens_per_s" not in row  # no previous scrape yet
    assert set(row["histograms"]) >= {"time_to_first_token_seconds", "request_prompt_tokens"}
    assert first.deployments == [{"served_name": "tiny-llama", "model_id": "/models/tiny"}]
    later = second.engine_samples[0]
    assert later["generation_tokens_total"] == 160.0
    assert later["generation_tokens_per_s"] == 160.0 / 5
    assert later["requests_per_s"] == 1.0
    assert "histograms" not in later  # histograms ride along every 10 s only


def test_a_batch_carries_inventory_and_rows_and_is_gzip_json() -> None:
    import gzip

    builder = BatchBuilder()
    observations = parse_dcgm(DCGM, 10.0)
    builder.add(observations)
    builder.add_request({"served_name": "llama", "arrival_ts": 9.0, "prompt_tokens": 1,
                         "output_tokens": 2, "e2e_s": 0.1, "status": "ok"})  # fmt: skip
    sealed = builder.seal({"dropped_records": 0, "dropped_batches": 0})
    payload = json.loads(gzip.decompress(sealed.body_gz))
    assert payload["batch_id"] == sealed.batch_id
    assert sealed.counts == {"gpu_samples": 3, "engine_samples": 0, "requests": 1}
    assert {d["served_name"] for d in payload["deployments"]} == {"llama"}
    assert len(payload["gpus"]) == 3
    # The next batch starts empty but still carries the inventory.
    following = json.loads(gzip.decompress(builder.seal({}).body_gz))
    assert following["gpu_samples"] == []
    assert len(following["gpus"]) == 3
