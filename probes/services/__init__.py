"""Writes of the probes app (typed, keyword-only); reads live in `probes.selectors`."""

from probes.services.ingest import BatchConflict, IngestResult, batch_ingest
from probes.services.nodes import NodeRegistrationError, node_register, node_token_rotate
from probes.services.traces import ImportReport, import_trace, trace_import

__all__ = [
    "BatchConflict",
    "ImportReport",
    "IngestResult",
    "NodeRegistrationError",
    "batch_ingest",
    "import_trace",
    "node_register",
    "node_token_rotate",
    "trace_import",
]
