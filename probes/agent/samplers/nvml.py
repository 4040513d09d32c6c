"""GPU samples from NVML (nvidia-ml-py): utilisation, memory, power, energy, clocks, processes.

Without a driver or GPU (`NVMLError_LibraryNotFound`, `DriverNotLoaded`, no devices) the
sampler says so once and yields nothing; it retries initialisation every RETRY_INIT_S.
MIG: a GPU in MIG mode reports its instances as GPUs of their own (with `mig_parent_uuid`);
NVML gives no utilisation for MIG instances, so their samples come from dcgm-exporter.
"""

from __future__ import annotations

import contextlib
import logging
from types import ModuleType
from typing import Any

from probes.agent.samplers import Observations, Once, Row

log = logging.getLogger(__name__)
RETRY_INIT_S = 300.0


def _load_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    module: ModuleType = pynvml
    return module


class NvmlSampler:
    name = "nvml"

    def __init__(self, nvml: ModuleType | None = None) -> None:
        # `nvml` is injectable so the GPU path can be exercised without a GPU.
        self._nvml = nvml if nvml is not None else _load_pynvml()
        self._ready = False
        self._next_init_s = 0.0
        self._once = Once()
        self.status = "not initialised"

    def sample(self, now_s: float) -> Observations:
        observations = Observations()
        if not self._ready and now_s >= self._next_init_s:
            self._init(observations, now_s)
        if not self._ready:
            observations.host = {"nvml": self.status}
            return observations
        nvml = self._nvml
        assert nvml is not None
        try:
            count = int(nvml.nvmlDeviceGetCount())
            processes: dict[str, list[Row]] = {}
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                self._device(nvml, handle, index, now_s, observations, processes)
        except nvml.NVMLError as exc:
            # A driver reload or a GPU falling off the bus: start over later.
            self._ready = False
            self._next_init_s = now_s + RETRY_INIT_S
            self.status = f"unavailable: {exc}"
            self._once.say(observations, f"NVML stopped answering ({exc}); GPU sampling paused")
            return observations
        observations.host = {"nvml": self.status, "gpu_processes": processes}
        return observations

    def _init(self, observations: Observations, now_s: float) -> None:
        nvml = self._nvml
        if nvml is None:
            self.status = "unavailable: nvidia-ml-py is not installed"
            self._next_init_s = float("inf")
            self._once.say(observations, f"NVML {self.status}; other samplers keep running")
            return
        try:
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            self.status = f"unavailable: {exc}"
            self._next_init_s = now_s + RETRY_INIT_S
            self._once.say(
                observations, f"NVML {self.status} (no NVIDIA driver or GPU?); other samplers "
                "keep running"
            )  # fmt: skip
            return
        if count == 0:
            self.status = "unavailable: NVML found no GPU"
            self._next_init_s = now_s + RETRY_INIT_S
            self._once.say(observations, f"NVML {self.status}; other samplers keep running")
            nvml.nvmlShutdown()
            return
        self._ready = True
        driver = _text(_maybe(nvml, nvml.nvmlSystemGetDriverVersion))
        self.status = f"ok: {count} GPU(s), driver {driver}"
        self._once.say(observations, None)
        observations.notes.append(f"NVML {self.status}")

    def _device(
        self,
        nvml: ModuleType,
        handle: Any,
        index: int,
        now_s: float,
        observations: Observations,
        processes: dict[str, list[Row]],
    ) -> None:
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        observations.gpus.append(
            {
                "uuid": uuid,
                "index": index,
                "name": _text(nvml.nvmlDeviceGetName(handle)),
                "memory_bytes": int(memory.total),
            }
        )
        util = _maybe(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        power_mw = _maybe(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
        energy_mj = _maybe(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        clock = _maybe(nvml, nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
        temp = _maybe(nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        if util is not None:
            observations.gpu_samples.append(
                {
                    "gpu_uuid": uuid,
                    "ts": now_s,
                    "util_pct": float(util.gpu),
                    "mem_used_bytes": int(memory.used),
                    "power_w": None if power_mw is None else power_mw / 1000.0,
                    "energy_j": None if energy_mj is None else energy_mj / 1000.0,
                    "sm_clock_mhz": None if clock is None else float(clock),
                    "temperature_c": None if temp is None else float(temp),
                }
            )
        running = _maybe(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
        processes[uuid] = [
            {"pid": int(p.pid), "used_memory_bytes": _int_or_none(p.usedGpuMemory)} for p in running
        ]
        self._mig_instances(nvml, handle, uuid, observations)

    def _mig_instances(
        self, nvml: ModuleType, handle: Any, parent_uuid: str, observations: Observations
    ) -> None:
        mode = _maybe(nvml, nvml.nvmlDeviceGetMigMode, handle)
        if not mode or mode[0] != nvml.NVML_DEVICE_MIG_ENABLE:
            return
        for i in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
            mig = _maybe(nvml, nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, i)
            if mig is None:
                continue  # an empty slot
            memory = nvml.nvmlDeviceGetMemoryInfo(mig)
            observations.gpus.append(
                {
                    "uuid": _text(nvml.nvmlDeviceGetUUID(mig)),
                    "index": i,
                    "name": _text(nvml.nvmlDeviceGetName(mig)),
                    "memory_bytes": int(memory.total),
                    "mig_parent_uuid": parent_uuid,
                }
            )

    def close(self) -> None:
        if self._ready and self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
            self._ready = False


def _maybe(nvml: ModuleType, function: Any, *args: Any) -> Any:
    """The call's result, or None where the GPU does not support it (NotSupported, N/A)."""
    try:
        return function(*args)
    except nvml.NVMLError as exc:
        not_supported = (
            getattr(nvml, "NVMLError_NotSupported", ()),
            getattr(nvml, "NVMLError_NotFound", ()),
            getattr(nvml, "NVMLError_NoPermission", ()),
            getattr(nvml, "NVMLError_InvalidArgument", ()),
        )
        if isinstance(exc, not_supported):
            return None
        raise


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) else None
