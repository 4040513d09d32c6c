"""What the pages say about the demo cluster: its telemetry is synthetic, derived from a trace.

Kept apart from `dashboard.demo_fleet` (which builds the fleet and imports the engine) so
pages can say it without importing the builder.
"""

from __future__ import annotations

CLUSTER = "demo"
NOTICE = (
    "Demo data: the requests are the Azure LLM inference traces of 2023 (conversation and "
    "code), imported into the last hour; the GPU telemetry and vLLM metrics are synthetic, "
    "derived from those traces: each minute's GPU utilization is the engine's simulated busy "
    "fraction at that minute's arrival rate per replica (the trace's hour repeated over the "
    "7 days), plus Gaussian noise of 3 points on 5-second samples. Deployments were sized by "
    "the engine to carry their trace within the default SLOs, plus one spare replica. "
    "See dashboard/demo_telemetry.py."
)


def demo_notice(cluster_name: str | None) -> str:
    """The notice for pages showing the demo cluster (or all clusters, when it exists)."""
    from probes.models import Cluster

    if cluster_name == CLUSTER or (
        cluster_name is None and Cluster.objects.filter(name=CLUSTER).exists()
    ):
        return NOTICE
    return ""
