"""Fleet inventory, GPU and vLLM telemetry, request traces, ingest bookkeeping and prices.

Units are in the field names (`_bytes`, `_w`, `_j`, `_s`, `_pct`). Timestamps are aware UTC.
One module per concept; everything is re-exported here (`from probes.models import Gpu`).
"""

from probes.models.ingest import IngestBatch
from probes.models.inventory import (
    Cluster,
    ControllerKind,
    Gpu,
    GpuMove,
    GpuMoveOutcome,
    ModelDeployment,
    Node,
    PriceSheet,
)
from probes.models.telemetry import (
    IDLE_UTIL_PCT,
    EngineRollup,
    EngineSample,
    GpuRollup,
    GpuSample,
    RollupResolution,
)
from probes.models.traces import (
    RequestRecord,
    RequestRollup,
    RequestSource,
    RequestStatus,
    TraceFormat,
    TraceImport,
    TraceShift,
)

__all__ = [
    "IDLE_UTIL_PCT",
    "Cluster",
    "ControllerKind",
    "EngineRollup",
    "EngineSample",
    "Gpu",
    "GpuMove",
    "GpuMoveOutcome",
    "GpuRollup",
    "GpuSample",
    "IngestBatch",
    "ModelDeployment",
    "Node",
    "PriceSheet",
    "RequestRecord",
    "RequestRollup",
    "RequestSource",
    "RequestStatus",
    "RollupResolution",
    "TraceFormat",
    "TraceImport",
    "TraceShift",
]
