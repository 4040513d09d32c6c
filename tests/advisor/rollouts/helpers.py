"""A small managed fleet and a stand-in for node agents: reports written as an agent would.

`report(node, ...)` stores what `ControllerTask` would POST (through the same service), so the
rollout steps are driven exactly as real agents drive them, without vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from advisor.models import Rollout
from probes.agent.desired import Observed
from probes.agent.vllm_metrics import Histogram
from probes.models import Cluster, ModelDeployment, Node
from probes.node_config import node_observed_config_store

BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))
AGENT_START = 1_000.0


@dataclass
class Fleet:
    cluster: Cluster
    nodes: list[Node]
    deployment: ModelDeployment


def fleet(count: int = 3) -> Fleet:
    cluster = Cluster.objects.create(name="prod")
    nodes = [Node.objects.create(cluster=cluster, hostname=f"gpu-{i}") for i in range(count)]
    deployment = ModelDeployment.objects.create(cluster=cluster, model_id="m", served_name="llama")
    return Fleet(cluster, nodes, deployment)


def histogram(count: int, value_s: float) -> dict[str, Any]:
    """`count` observations all equal to `value_s`, cumulative like vLLM's."""
    buckets = tuple((bound, float(count if value_s <= bound else 0)) for bound in BOUNDS)
    return Histogram(buckets, value_s * count, float(count)).to_json()


def metrics(
    requests: int, *, errors: int = 0, ttft_s: float = 0.04, tpot_s: float = 0.008
) -> dict[str, Any]:
    return {
        "at": 0.0,
        "requests_total": float(requests),
        "requests_error": float(errors),
        "http_total": float(requests),
        "http_5xx": float(errors),
        "generation_tokens": float(requests * 16),
        "ttft": histogram(requests, ttft_s),
        "tpot": histogram(requests, tpot_s),
    }


class Agent:
    """One node's agent as the server sees it: a monotonically numbered series of reports."""

    def __init__(self, node: Node, *, started_at: float = AGENT_START) -> None:
        self.node = node
        self.started_at = started_at
        self.seq = 0
        self.generation = 0
        self.config: dict[str, Any] | None = None
        self.restarts = 0
        self.requests = 0
        self.failure: dict[str, Any] | None = None

    def report(
        self,
        *,
        at: datetime | None = None,
        state: str = "serving",
        healthy: bool | None = None,
        ttft_s: float = 0.04,
        errors: int = 0,
        more_requests: int = 0,
        detail: str = "",
    ) -> None:
        self.seq += 1
        self.requests += more_requests
        when = (at or timezone.now()).timestamp()
        observed = Observed.from_json(
            {
                "agent_started_at": self.started_at,
                "seq": self.seq,
                "reported_at": when,
                "controller": "local",
                "state": state,
                "applied_generation": self.generation,
                "healthy": state == "serving" if healthy is None else healthy,
                "config": self.config,
                "last_failure": self.failure,
                "restarts": self.restarts,
                "metrics": metrics(self.requests, errors=errors, ttft_s=ttft_s),
                "probes": {"ok": self.requests, "failed": 0, "last_error": None},
                "detail": detail,
            }
        )
        assert node_observed_config_store(node_id=self.node.id, observed=observed)

    def desired(self) -> dict[str, Any]:
        self.node.refresh_from_db()
        return self.node.desired_config

    def apply_desired(self, *, at: datetime | None = None) -> int:
        """Do what the controller does with a new generation that works; returns it."""
        desired = self.desired()
        self.generation = desired["generation"]
        self.config = desired["config"]
        self.report(at=at)
        return self.generation

    def fail_desired(self, error: str, *, at: datetime | None = None) -> int:
        desired = self.desired()
        self.failure = {"generation": desired["generation"], "error": error,
                        "at": (at or timezone.now()).timestamp(), "restored": True}  # fmt: skip
        self.report(at=at)
        return int(desired["generation"])


def statuses(rollout: Rollout) -> list[str]:
    return [t.status for t in rollout.targets.order_by("position")]


def transitions(rollout: Rollout) -> list[tuple[str, str]]:
    return [
        (e.from_status, e.to_status)
        for e in rollout.events.filter(kind="transition").order_by("at", "id")
    ]
