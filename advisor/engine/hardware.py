"""Hardware as a lever: the GPU kinds a deployment can move to, and what a move needs.

A kind is available when the scenario's price sheet has a row for it that the user gave
(`PriceEntry.defaulted` False) and the catalog knows it as a GPU; a kind absent from the
sheet is never proposed. `max_gpus` on a row caps the GPUs of that kind the plan uses across
the fleet at once (the planner's `choose` spends it deployment by deployment).

The user narrows it: `Options.hardware_moves` False switches the lever off for the fleet,
and a deployment's `gpu_kinds` (`GpuKindChoice`) pins it to some kinds (moves only to those)
or excludes some (never those). Today's kind stays allowed unless excluded; excluding it
(`today_allowed` False) means the plan must move the deployment, and where no allowed kind
serves it the planner reports no configuration rather than keeping today's.

`moves(ctx, item, precisions)` lists, per available kind, each precision the planner's
lattice already considers at the smallest tensor-parallel size where it fits (and twice that,
for the latency a wider replica buys), with a lower bound on its monthly cost that needs no
simulation (`lower_bound_usd_per_month`): the planner simulates the cheapest bounds first and
skips an option whose bound already costs more than the best configuration found.

`node_manifest` and `move_line` say what a chosen move needs and what it does, in words and
as a Kubernetes Deployment patch: the node controller does not change a deployment's GPU
kind, someone provisions the nodes and applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from advisor.engine.advice import Projection
from advisor.engine.autoscale import yaml_text
from advisor.engine.capacity import ReplicaConfig
from advisor.engine.catalog import CatalogError, HardwareSpec
from advisor.engine.context import AssessmentContext, Resolved
from advisor.engine.prefix_cache import reused_prompt_share
from advisor.engine.redundancy import replica_floor
from advisor.engine.strategies._common import ms, usd

HARDWARE = "hardware"  # the lever's name among the planner's strategies
WIDER = 2  # besides the smallest TP that fits, this many times it (when it divides the heads)

# The `nvidia.com/gpu.product` label NVIDIA's GPU feature discovery puts on a node (the
# nvidia-smi product name with spaces as dashes); kinds not listed get "NVIDIA-<name>", to
# be checked against `kubectl get nodes -L nvidia.com/gpu.product`.
GPU_PRODUCT_LABELS = {
    "A100-40GB": "NVIDIA-A100-SXM4-40GB",
    "A100-80GB": "NVIDIA-A100-SXM4-80GB",
    "H100-SXM": "NVIDIA-H100-80GB-HBM3",
    "H100-PCIe": "NVIDIA-H100-PCIe",
    "H200-SXM": "NVIDIA-H200",
    "L4": "NVIDIA-L4",
    "L40S": "NVIDIA-L40S",
    "A10G": "NVIDIA-A10G",
    "B200": "NVIDIA-B200",
}
AMD_KINDS = ("MI300X", "MI325X", "MI355X")


@dataclass(frozen=True)
class Move:
    """A configuration on another kind, its cost bound, and the replicas its kind allows."""

    config: ReplicaConfig
    bound_usd_per_month: float
    max_replicas: int | None  # the kind's `max_gpus` // TP; None: no limit


def _kind_names(ctx: AssessmentContext, names: tuple[str, ...]) -> set[str]:
    """Catalog names of the kinds given (aliases resolved; unknown names kept as given)."""
    out = set()
    for name in names:
        try:
            out.add(ctx.catalog.gpu(name).name)
        except CatalogError:
            out.add(name)
    return out


def today_allowed(ctx: AssessmentContext, item: Resolved) -> bool:
    """Whether the plan may keep the deployment on today's GPU kind (not excluded)."""
    return item.hardware.name not in _kind_names(ctx, item.spec.gpu_kinds.exclude)


def available(ctx: AssessmentContext, item: Resolved) -> tuple[HardwareSpec, ...]:
    """The GPU kinds other than today's that the price sheet offers and the user allows.

    None when the lever is off (`Options.hardware_moves`); only pinned kinds when the
    deployment pins some; never an excluded kind.
    """
    if item.hardware.kind != "gpu" or not ctx.options.hardware_moves:
        return ()
    choice = item.spec.gpu_kinds
    pinned = _kind_names(ctx, choice.pin)
    excluded = _kind_names(ctx, choice.exclude)
    out = []
    for name, entry in ctx.prices.as_dict().items():
        if entry.defaulted or name == item.hardware.name or name in excluded:
            continue
        if pinned and name not in pinned:
            continue
        try:
            hardware = ctx.catalog.gpu(name)
        except CatalogError:  # the price book keeps catalog names only; kept for safety
            continue
        if hardware.kind == "gpu":
            out.append(hardware)
    return tuple(sorted(out, key=lambda h: h.name))


def gpu_limits(ctx: AssessmentContext) -> dict[str, int]:
    """`max_gpus` per kind, for the kinds whose price row sets one."""
    return {
        name: entry.max_gpus
        for name, entry in ctx.prices.as_dict().items()
        if entry.max_gpus is not None and not entry.defaulted
    }


def floor_replicas(item: Resolved) -> int:
    """The fewest replicas any fixed fleet keeps (as `size_fixed` sizes it)."""
    return max(item.spec.autoscaling.min_replicas, 1, replica_floor(item.spec).replicas)


def fewest_prefill_tokens(item: Resolved) -> float:
    """Mean prompt tokens per request that no prefix cache can spare the simulator.

    With block hashes in the simulated sample, the share an unbounded cache would find
    (`reused_prompt_share`: any full block seen before, to the last token) is an upper
    bound of what any replica's LRU finds; without them every prompt token is prefilled.
    """
    base = item.shape.base
    if base.prefix is None:
        return item.shape.mean_prompt_tokens
    share = reused_prompt_share(base.prefix, base.prompt_tokens)
    return float(base.prompt_tokens.mean()) * (1.0 - share)


def lower_bound_usd_per_month(
    ctx: AssessmentContext,
    item: Resolved,
    config: ReplicaConfig,
    prefill_tokens: float | None = None,
) -> float:
    """A monthly cost no fixed fleet of `config` can go below, without simulating it.

    Replicas: at least the redundancy floor, and at least the mean load over the most
    requests per second a replica completes when its matmuls alone ran at the calibrated
    compute peak (every prefilled prompt token and every output token passes 2 x matmul
    parameters FLOPs; the simulator's step time is never shorter than that). Times TP, the
    price and the hours. `prefill_tokens`: the mean prompt tokens that must be prefilled
    with prefix caching on (`fewest_prefill_tokens`); None counts every prompt token.
    """
    profile = ctx.profiles.lookup(config.hardware.name, ctx.options.engine)
    deployment = config.deployment()
    flops_per_s = (
        config.hardware.peak_flops_per_s(deployment.compute)
        * profile.compute_efficiency
        * config.tensor_parallel
    )
    prompt = item.shape.mean_prompt_tokens
    if config.enable_prefix_caching and prefill_tokens is not None:
        prompt = prefill_tokens
    tokens = prompt + item.shape.mean_output_tokens
    seconds_per_request = 2.0 * config.model.matmul_params_per_token * tokens / flops_per_s
    replicas = max(floor_replicas(item), math.ceil(item.load.mean_rps * seconds_per_request - 1e-9))
    usd_per_hour = ctx.prices.usd_per_gpu_hour(config.hardware) * config.gpus * replicas
    return usd_per_hour * ctx.options.hours_per_month


def _fitting_tp(config: ReplicaConfig, max_tp: int) -> list[int]:
    """The smallest TP at which `config` fits, and `WIDER` times it (when that fits too)."""
    fitting = config.fitting_tensor_parallel(max_tp)
    if not fitting:
        return []
    wide = fitting[0] * WIDER
    return [fitting[0], wide] if wide in fitting else [fitting[0]]


def moves(ctx: AssessmentContext, item: Resolved, precisions: list[ReplicaConfig]) -> list[Move]:
    """Every (kind, precision, TP) option on the available kinds, cheapest bound first.

    `precisions` are today's configuration and the precisions the lattice keeps (their
    scheduler limits are kept as they are); an option that cannot fit its kind's count
    limit at the redundancy floor is left out.
    """
    limits = gpu_limits(ctx)
    floor = floor_replicas(item)
    prefill_tokens = fewest_prefill_tokens(item)
    out: list[Move] = []
    seen: set[ReplicaConfig] = set()
    for hardware in available(ctx, item):
        limit = limits.get(hardware.name)
        for precision in precisions:
            on_kind = replace(precision, hardware=hardware)
            for tp in _fitting_tp(on_kind, ctx.options.max_tensor_parallel):
                config = replace(on_kind, tensor_parallel=tp)
                if config in seen or (limit is not None and limit < tp * floor):
                    continue
                seen.add(config)
                bound = lower_bound_usd_per_month(ctx, item, config, prefill_tokens)
                out.append(Move(config, bound, None if limit is None else limit // tp))
    out.sort(key=lambda m: (m.bound_usd_per_month, m.config.hardware.name, m.config.gpus))
    return out


def gpu_product_label(hardware: HardwareSpec) -> tuple[str, str, str]:
    """(node label key, its value, the extended resource name) for a kind's nodes."""
    if hardware.name in AMD_KINDS:
        return "amd.com/gpu.product-name", f"AMD_Instinct_{hardware.name}", "amd.com/gpu"
    label = GPU_PRODUCT_LABELS.get(hardware.name, f"NVIDIA-{hardware.name}")
    return "nvidia.com/gpu.product", label, "nvidia.com/gpu"


def node_manifest(
    config: ReplicaConfig, *, deployment: str, replicas: int, namespace: str = "default"
) -> str:
    """A Deployment patch that puts `deployment`'s vLLM pods on nodes of `config`'s kind."""
    key, value, resource = gpu_product_label(config.hardware)
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {
                    "nodeSelector": {key: value},
                    "containers": [
                        {
                            "name": "vllm",
                            "resources": {
                                "limits": {resource: config.tensor_parallel},
                                "requests": {resource: config.tensor_parallel},
                            },
                        }
                    ],
                }
            },
        },
    }
    header = (
        f"# {deployment} on {config.hardware.name}: {replicas} replica(s) x "
        f"{config.tensor_parallel} GPU(s) = {replicas * config.tensor_parallel} "
        f"{config.hardware.name} GPU(s), nodes labelled {key}={value}\n"
    )
    return header + yaml_text(doc) + "\n"


def nodes_note(config: ReplicaConfig, gpus_peak: int, today: HardwareSpec) -> str:
    """What a hardware move asks of the cluster, in words."""
    key, value, _ = gpu_product_label(config.hardware)
    return (
        f"moves from {today.name} to {config.hardware.name}: needs {gpus_peak} "
        f"{config.hardware.name} GPU(s) at peak ({config.tensor_parallel} per replica, on "
        f"nodes labelled {key}={value}); the node controller does not change GPU kinds: "
        "provision the nodes, apply the Deployment patch, then release the old GPUs"
    )


def move_line(
    name: str, before: ReplicaConfig, before_gpus: float, after: ReplicaConfig, today: Projection,
    plan: Projection,
) -> str:  # fmt: skip
    """ "llama-3-8b: H100-SXM x2 -> L40S x3, -$4,321/month, TTFT p95 85 ms -> 120 ms"."""
    delta = plan.usd_per_month - today.usd_per_month
    sign = "+" if round(delta) > 0 else ""
    return (
        f"{name}: {before.hardware.name} x{before_gpus:g} -> {after.hardware.name} "
        f"x{plan.gpus_peak:g}, {sign}{usd(delta)}/month, TTFT p95 {ms(today.ttft_p95_s)} -> "
        f"{ms(plan.ttft_p95_s)}"
    )
