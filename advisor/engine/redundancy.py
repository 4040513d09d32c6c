"""The redundancy rule: the fewest replicas a plan keeps for a deployment (N+1 by default).

A plan that cuts a deployment to one replica leaves no replica serving while that one
restarts, is rescheduled or fails. The rule comes with the deployment's SLOs
(`SloSpec.min_replicas`): a number set there (0: no minimum, so elastic scaling may scale to
zero), else the product default: at least `DEFAULT_MIN_REPLICAS` where today runs that many
or more (today's redundancy is kept), and no minimum where today runs one.

Everything that chooses a replica count applies it: right-sizing (`size_fixed`, which every
per-replica strategy sizes with), elastic scaling (the HPA / KEDA minimum), and sharing
(a deployment with a minimum is not put to sleep by rotation).
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.engine.scenario import DeploymentSpec

DEFAULT_MIN_REPLICAS = 2


@dataclass(frozen=True)
class ReplicaFloor:
    """The rule for one deployment: `replicas` (0: no minimum), whether it was set, in words."""

    replicas: int
    defaulted: bool
    text: str


def replica_floor(spec: DeploymentSpec) -> ReplicaFloor:
    """The deployment's rule (module docstring)."""
    given = spec.slo.min_replicas
    if given is not None:
        if given == 0:
            return ReplicaFloor(0, False, "no minimum replica count (set with the SLOs)")
        return ReplicaFloor(given, False, f"at least {given} replica(s) (set with the SLOs)")
    if spec.replicas >= DEFAULT_MIN_REPLICAS:
        return ReplicaFloor(
            DEFAULT_MIN_REPLICAS,
            True,
            f"at least {DEFAULT_MIN_REPLICAS} replicas (default: today runs {spec.replicas}, "
            "so one can fail or restart while another serves)",
        )
    return ReplicaFloor(
        0, True, f"no minimum replica count (default: today runs {spec.replicas} replica)"
    )
