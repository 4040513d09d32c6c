"""Writes of the probes app (typed, keyword-only); reads live in `probes.selectors`."""

from probes.services.ingest import IngestResult, batch_ingest
from probes.services.nodes import NodeRegistrationError, node_register, node_token_rotate

__all__ = [
    "IngestResult",
    "NodeRegistrationError",
    "batch_ingest",
    "node_register",
    "node_token_rotate",
]
