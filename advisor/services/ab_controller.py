"""A/B through a node's controller: each variant is a desired-config generation, then restore.

An endpoint without `local_launch` whose node's agent reports a controller (`Node.
observed_config["controller"]`) is A/B-tested the way a rollout changes a node: the variant's
engine args, merged over the node's current config (model, replicas etc. kept), become a new
generation of `Node.desired_config`; the A/B waits until the agent reports that generation
serving and healthy, measures, and moves on. Whatever happens (failure, cancel, exception),
the node's original config is written back as a last generation and waited for.

While such an A/B runs it holds its node: it refuses to start on a node an active rollout
holds, and `advisor.services.rollouts` refuses a proposal on a node it holds
(`ab_holding_job`). Both sides lock the node rows first, so neither can slip past the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from advisor.models import BenchmarkEndpoint, BenchmarkJob, JobKind, JobStatus, RolloutTarget
from probes.agent.desired import NodeConfig, ProtocolError, check_engine_args
from probes.models import Node
from probes.node_config import node_desired_config_set

# A real GPU node loads weights and captures graphs before it serves again: minutes.
APPLY_TIMEOUT_S = 600.0
POLL_S = 1.0  # one short query of the node row per poll


class AbSwitchError(RuntimeError):
    """The node could not be switched (refused, the agent failed, or it stayed silent)."""


def ab_uses_controller(endpoint: BenchmarkEndpoint) -> bool:
    """Whether an A/B on this endpoint switches config through its node's controller.

    A `local_launch` keeps the old way (the bench worker restarts its own vLLM).
    """
    return not endpoint.local_launch and bool(
        (endpoint.node.observed_config or {}).get("controller")
    )


def ab_possible(endpoint: BenchmarkEndpoint) -> bool:
    """Whether an A/B can switch this endpoint's config: a local launch or a node controller."""
    return bool(endpoint.local_launch) or ab_uses_controller(endpoint)


def ab_holding_job(nodes: Sequence[Node]) -> BenchmarkJob | None:
    """A running controller A/B on one of these nodes (it holds the node's desired config)."""
    return (
        BenchmarkJob.objects.filter(
            kind=JobKind.AB,
            status=JobStatus.RUNNING,
            endpoint__node__in=nodes,
            endpoint__local_launch={},
        )
        .select_related("endpoint__node")
        .order_by("id")
        .first()
    )


@dataclass
class NodeSwitch:
    """One A/B's use of a node: what to restore and every generation it wrote."""

    node_id: int
    hostname: str
    original: dict[str, Any]  # NodeConfig JSON: what the node served before the A/B
    original_generation: int
    apply_timeout_s: float
    cancelled: Callable[[], bool]
    generations: dict[str, int] = field(default_factory=dict)
    restore: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def hold(
        cls, node: Node, *, apply_timeout_s: float, cancelled: Callable[[], bool]
    ) -> NodeSwitch:
        """Take the node for an A/B; `AbSwitchError` when a rollout holds it."""
        with transaction.atomic():
            node = Node.objects.select_for_update().get(id=node.id)
            busy = (
                RolloutTarget.objects.filter(node=node, active=True)
                .select_related("rollout")
                .first()
            )
            if busy is not None:
                raise AbSwitchError(
                    f"node {node.hostname} is in rollout #{busy.rollout_id} "
                    f"({busy.rollout.status}): an A/B would change its config under the "
                    "rollout; wait until it is over or abort it first"
                )
        observed, desired = node.observed_config or {}, node.desired_config or {}
        # The restore point, as a rollout takes it: what runs, else what was asked for.
        original = observed.get("config") or desired.get("config") or NodeConfig().to_json()
        return cls(
            node_id=node.id,
            hostname=node.hostname,
            original=NodeConfig.from_json(original).to_json(),
            original_generation=int(desired.get("generation", 0)),
            apply_timeout_s=apply_timeout_s,
            cancelled=cancelled,
        )

    def switch_to(self, name: str, engine_args: dict[str, Any], model: str | None = None) -> float:
        """Serve the original config with `engine_args` over it; seconds until it served.

        `model`: the variant's own checkpoint instead of the original's. The server cannot see
        the node's disk: the agent checks the checkpoint is there before it stops anything
        (the local controller; a Kubernetes pod only finds out when it starts) and refuses
        with the reason, which comes back here.
        Raises `AbSwitchError` with the agent's reason (or a timeout, or args a controller
        does not take); `AbCancelled` when the job is cancelled while waiting.
        """
        base = NodeConfig.from_json(self.original)
        try:
            check_engine_args(engine_args, f"ab.{name}_args")
        except ProtocolError as exc:
            raise AbSwitchError(f"node {self.hostname}, {name}: {exc}") from exc
        config = NodeConfig(
            {**base.engine_args, **engine_args}, model or base.model, base.replicas,
            base.autoscaling,
        )  # fmt: skip
        generation = node_desired_config_set(node_id=self.node_id, config=config)
        self.generations[name] = generation
        started = time.perf_counter()
        problem = self._wait(generation, cancellable=True)
        if problem is not None:
            raise AbSwitchError(
                f"node {self.hostname}, {name} (generation {generation}): {problem}"
            )
        return time.perf_counter() - started

    def restore_original(self) -> dict[str, Any]:
        """Write the original config back and wait for it (never cancelled); the outcome."""
        generation = node_desired_config_set(
            node_id=self.node_id, config=NodeConfig.from_json(self.original)
        )
        self.generations["restore"] = generation
        problem = self._wait(generation, cancellable=False)
        self.restore = {"generation": generation, "served": problem is None, "error": problem or ""}
        return self.restore

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.hostname,
            "original_generation": self.original_generation,
            "generations": dict(self.generations),
            "restore": dict(self.restore),
        }

    def _wait(self, generation: int, *, cancellable: bool) -> str | None:
        """None once the agent serves `generation` healthy; else why not."""
        deadline = time.monotonic() + self.apply_timeout_s
        while True:
            observed = Node.objects.values_list("observed_config", flat=True).get(id=self.node_id)
            observed = observed or {}
            failure = observed.get("last_failure") or {}
            if failure.get("generation") == generation:
                restored = "previous config serves" if failure.get("restored") else "NOT restored"
                return f"the agent could not apply it: {failure.get('error')} ({restored})"
            if (
                (observed.get("applied_generation") or 0) >= generation
                and observed.get("state") == "serving"
                and observed.get("healthy")
            ):
                return None
            if cancellable and self.cancelled():
                raise AbCancelled(f"cancelled while node {self.hostname} applied {generation}")
            if time.monotonic() >= deadline:
                return (
                    f"not serving within {self.apply_timeout_s:g} s "
                    f"(state {observed.get('state')}, generation "
                    f"{observed.get('applied_generation')})"
                )
            time.sleep(POLL_S)


class AbCancelled(Exception):
    """The job was cancelled while a variant was being applied."""
