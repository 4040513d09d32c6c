"""Turn an engine recommendation (a StrategyResult or a plan entry, as stored JSON) into a change.

The engine's `ConfigChange` names engine args as CLI flags (`{"--max-num-seqs": 512}`), a
model path, replicas, tensor parallelism, environment variables and manifests (YAML text);
its `Projection`s give GPUs, busy fraction, latency p95s, throughput and USD. A rollout's
change names engine args as `max_num_seqs` and keeps the projection in the ledger's terms
(`advisor.rollouts.ledger.PROJECTION_FIELDS`).

A move to another GPU kind (`hardware` set) is refused with what to do instead: nodes of
that kind must be provisioned and the plan's Deployment patch applied, which no node
controller does.

`split_replica_part` keeps the per-replica part (engine args, model, precision, speculative
config) for nodes whose controller cannot scale replicas (a local vLLM process) and turns
the replica count and the autoscaling manifest into manual steps a person carries out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml


class RecommendationError(ValueError):
    """The recommendation cannot become a rollout; the message says why."""


def ledger_figures(projection: Mapping[str, Any] | None) -> dict[str, float]:
    """An engine Projection dict in the ledger's terms (missing figures left out)."""
    if not projection:
        return {}
    pairs = {
        "gpus": projection.get("gpus"),
        "util_pct": (
            projection["busy_fraction"] * 100.0
            if isinstance(projection.get("busy_fraction"), int | float)
            else projection.get("util_pct")
        ),
        "throughput_tok_s": projection.get("output_tokens_per_s"),
        "ttft_p95_s": projection.get("ttft_p95_s"),
        "tpot_p95_s": projection.get("tpot_p95_s"),
        "usd_per_hour": projection.get("usd_per_hour"),
        "usd_per_1m_tokens": projection.get("usd_per_1m_output_tokens"),
    }
    return {
        k: float(v)
        for k, v in pairs.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v and v >= 0
    }


def change_from_recommendation(result: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """{engine_args, model_path, replicas, autoscaling, projection, title} from a stored result."""
    change = result.get("config_change")
    if not isinstance(change, Mapping):
        raise RecommendationError(f"{source} has no config change")
    kind = change.get("hardware")
    if kind:
        patches = sorted(str(n) for n in (change.get("manifests") or {}) if "-nodes." in str(n))
        where = f" ({', '.join(patches)})" if patches else ""
        raise RecommendationError(
            f"{source} moves the deployment to {kind} GPUs, which a rollout cannot do: it "
            "changes engine args, model, replicas and autoscaling on the nodes the deployment "
            f"has. Provision the {kind} nodes the plan names, apply its Deployment patch"
            f"{where} there, then release the old GPUs; or apply a strategy's recommendation, "
            "which keeps today's GPUs"
        )
    env = change.get("env") or {}
    if env:
        raise RecommendationError(
            f"{source} sets environment variables ({', '.join(sorted(env))}); rollouts apply "
            "engine args, model, replicas and autoscaling only: write the change by hand"
        )
    engine_args: dict[str, Any] = {}
    for flag, value in (change.get("engine_args") or {}).items():
        name = str(flag).removeprefix("--").replace("-", "_")
        engine_args[name] = value
    if change.get("tensor_parallel"):
        engine_args["tensor_parallel_size"] = int(change["tensor_parallel"])
    autoscaling: dict[str, Any] = {}
    for name, text in (change.get("manifests") or {}).items():
        try:
            manifest = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RecommendationError(f"{source}: manifest {name} is not YAML: {exc}") from exc
        if isinstance(manifest, Mapping) and manifest.get("kind") == "HorizontalPodAutoscaler":
            autoscaling = dict(manifest)
    if not (engine_args or change.get("model_path") or change.get("replicas") or autoscaling):
        raise RecommendationError(f"{source} changes nothing")
    baseline = ledger_figures(result.get("baseline"))
    projected = ledger_figures(result.get("projected") or result.get("plan"))
    projection = {"baseline": baseline, "projected": projected, "source": source}
    title = str(result.get("summary") or result.get("message") or source)[:200]
    return {
        "title": title,
        "engine_args": engine_args,
        "model_path": change.get("model_path") or "",
        "replicas": change.get("replicas"),
        "autoscaling": autoscaling,
        "projection": projection if baseline and projected else {},
    }


def split_replica_part(
    change: Mapping[str, Any], *, deployment: str, local_nodes: list[str]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(the change without replicas and autoscaling, the manual steps that replace them).

    `local_nodes`: the hostnames that run one local vLLM process each. Nothing moves when the
    change has no replica part. Raises `RecommendationError` when nothing per-replica is left.
    """
    replicas = change.get("replicas")
    autoscaling = change.get("autoscaling") or {}
    if replicas is None and not autoscaling:
        return dict(change), []
    where = ", ".join(local_nodes)
    steps: list[dict[str, str]] = []
    if replicas is not None:
        steps.append({
            "title": f"Run {replicas} replica(s) of {deployment}",
            "detail": f"{where} run(s) one local vLLM process each, which this rollout updates "
            "in place; start or stop vLLM processes by hand (each with this change's engine "
            f"args) until {deployment} has {replicas} replica(s).",
            "manifest": "",
        })  # fmt: skip
    if autoscaling:
        steps.append({
            "title": f"Autoscale {deployment} as the recommendation says",
            "detail": "A local vLLM process has no autoscaler: apply this manifest where "
            f"{deployment} runs on Kubernetes, or scale by hand between its minReplicas and "
            "maxReplicas on the metric it names.",
            "manifest": yaml.safe_dump(dict(autoscaling), sort_keys=False),
        })  # fmt: skip
    kept = {**change, "replicas": None, "autoscaling": {}}
    if not (kept.get("engine_args") or kept.get("model_path")):
        raise RecommendationError(
            f"it only changes replicas or autoscaling, which {where} cannot apply (one local "
            "vLLM process each): scale by hand (see the plan's manifests), or choose nodes "
            "with the kubernetes controller"
        )
    return kept, steps
