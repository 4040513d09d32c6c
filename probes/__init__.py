"""Fleet inventory, telemetry and request traces; the ingest API the node agents push to."""
