"""A node's desired config (written by rollouts) and observed config (reported by its agent).

`Node.desired_config` holds `probes.agent.desired.Desired.to_json()`: a generation that only
grows, the config the node's controller must run, and the probe window for the bake.
`Node.observed_config` holds the agent's latest `Observed.to_json()` plus `received_at`
(server time, so a stalled agent shows even when its clock is wrong). Reports that arrive
out of order (an older `seq` of the same agent run) are ignored.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from probes.agent.desired import Desired, NodeConfig, Observed
from probes.models import Node


def node_desired_config_set(
    *,
    node_id: int,
    config: NodeConfig | None,
    rollout_id: int | None = None,
    probe_interval_s: float = 0.0,
    probe_for_s: float = 0.0,
) -> int:
    """Write a new desired config for a node and return its generation (previous + 1)."""
    with transaction.atomic():
        node = Node.objects.select_for_update().get(id=node_id)
        current = node.desired_config or {}
        generation = int(current.get("generation", 0)) + 1
        node.desired_config = Desired(
            generation=generation,
            config=config,
            rollout_id=rollout_id,
            probe_interval_s=probe_interval_s,
            probe_for_s=probe_for_s,
        ).to_json()
        node.save(update_fields=["desired_config"])
    return generation


def node_desired_config_get(*, node: Node) -> dict[str, Any]:
    """What the agent pulls: `Desired` JSON (generation 0 and no config when none was set)."""
    return Desired.from_json(node.desired_config).to_json()


def node_observed_config_store(*, node_id: int, observed: Observed) -> bool:
    """Store an agent's report unless a newer one is already stored; True when stored."""
    now = timezone.now()
    with transaction.atomic():
        node = Node.objects.select_for_update().get(id=node_id)
        if not observed.newer_than(node.observed_config or {}):
            return False
        node.observed_config = {**observed.to_json(), "received_at": now.timestamp()}
        node.last_seen = now
        node.save(update_fields=["observed_config", "last_seen"])
    return True
