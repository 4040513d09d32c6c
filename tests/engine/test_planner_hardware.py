"""Hardware as a lever: the planner moves a deployment to a cheaper GPU kind the sheet offers."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import yaml

from advisor.engine.advice import Plan
from advisor.engine.capacity import WorkloadShape
from advisor.engine.context import AssessmentContext, Resolved
from advisor.engine.hardware import (
    available,
    fewest_prefill_tokens,
    lower_bound_usd_per_month,
    moves,
    today_allowed,
)
from advisor.engine.planner import assess, search
from advisor.engine.scenario import (
    DeploymentSpec,
    GpuKindChoice,
    PriceEntry,
    Scenario,
    ScenarioError,
    SloSpec,
)
from advisor.engine.strategies._common import size_fixed
from advisor.engine.workload import PrefixBlocks, Workload
from tests.engine.strategies.helpers import deployment, scenario

HOURS = 730.0
H100, L40S, L4 = 4.0, 1.5, 0.8  # the test sheet's USD per GPU-hour


def sheet(**kinds: PriceEntry) -> dict[str, PriceEntry]:
    return {kind.replace("_", "-"): entry for kind, entry in kinds.items()}


def priced(
    *deployments: DeploymentSpec, prices: dict[str, PriceEntry], **options: object
) -> Scenario:
    base = scenario(*deployments, **options)
    return Scenario(base.deployments, prices=prices, options=base.options)


def idle_8b(name: str = "chat", *, seed: int = 0) -> DeploymentSpec:
    """Llama-3-8B on 2 H100s at 0.15 req/s: the GPUs are busy about 7% of the time."""
    return deployment(name, rate_rps=0.15, replicas=2, slo=SloSpec(1.0, 0.05), seed=seed)


ALL_THREE = sheet(
    H100_SXM=PriceEntry(H100, "test sheet"),
    L40S=PriceEntry(L40S, "test sheet"),
    L4=PriceEntry(L4, "test sheet"),
)


@pytest.fixture(scope="module")
def moved() -> Plan:
    return assess(priced(idle_8b(), prices=ALL_THREE))


def test_it_moves_an_idle_8b_deployment_off_h100_to_the_cheapest_kind_meeting_its_slos(
    moved: Plan,
) -> None:
    chat = moved.deployment("chat")
    assert chat.baseline is not None
    assert chat.baseline.busy_fraction == pytest.approx(0.07, abs=0.01)
    assert chat.baseline.usd_per_month == pytest.approx(2 * H100 * HOURS)  # $5,840
    # two L4s (the redundancy rule keeps 2 replicas), FP8 weights: L4 has FP8 tensor cores
    assert chat.strategies == ("hardware", "quantization")
    assert chat.config["hardware"] == "L4"
    assert (chat.config["weight_dtype"], chat.config["tensor_parallel"]) == ("fp8", 1)
    assert chat.config["replicas"] == 2
    assert chat.plan is not None
    assert chat.plan.gpus == 2.0
    assert chat.plan.usd_per_month == pytest.approx(2 * L4 * HOURS)  # $1,168
    assert chat.plan.meets_slo
    assert chat.plan.ttft_p95_s <= 1.0
    assert chat.plan.tpot_p95_s <= 0.05
    ttft_before, ttft_after = (round(p.ttft_p95_s * 1e3) for p in (chat.baseline, chat.plan))
    assert chat.move == (
        f"chat: H100-SXM x2 -> L4 x2, -$4,672/month, TTFT p95 {ttft_before} ms -> {ttft_after} ms"
    )


def test_it_says_which_kinds_it_searched_and_which_profile_a_move_rests_on(moved: Plan) -> None:
    assert (
        "GPU kinds a deployment may move to: those the price sheet lists (H100-SXM, L4, L40S); "
        "a move is priced on-demand (reserved and spot prices are shown, not used)"
    ) in moved.assumptions
    assert (
        "deployments moved to L4: step times from the calibration profile for (*, *): "
        "fit-public advisor/engine/data/public_cases.csv (train split)"
    ) in moved.assumptions


def test_it_says_which_nodes_a_move_needs_and_patches_the_deployment_onto_them(
    moved: Plan,
) -> None:
    change = moved.deployment("chat").config_change
    assert change.hardware == "L4"
    assert change.engine_args == {"--quantization": "fp8"}
    assert change.replicas == 2
    assert any(
        note.startswith("moves from H100-SXM to L4: needs 2 L4 GPU(s) at peak (1 per replica, "
                        "on nodes labelled nvidia.com/gpu.product=NVIDIA-L4)")
        for note in change.notes
    )  # fmt: skip
    manifest = yaml.safe_load(change.manifests["chat-l4-nodes.yaml"])
    pod = manifest["spec"]["template"]["spec"]
    assert manifest["kind"] == "Deployment"
    assert manifest["metadata"]["name"] == "chat"
    assert manifest["spec"]["replicas"] == 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}


def test_it_adds_the_move_as_a_lever_of_the_combination_table(moved: Plan) -> None:
    rows = {frozenset(r.strategies): r for r in moved.combinations}
    assert len(rows) == 2**6
    assert rows[frozenset()].usd_per_month == pytest.approx(2 * H100 * HOURS)
    # the move alone keeps BF16, which L40S serves within the SLOs and L4 does not
    assert rows[frozenset({"hardware"})].usd_per_month == pytest.approx(2 * L40S * HOURS)
    assert rows[frozenset({"hardware", "quantization"})].usd_per_month == pytest.approx(
        2 * L4 * HOURS
    )


def test_it_keeps_a_70b_deployment_on_its_kind_when_nothing_cheaper_fits() -> None:
    big = deployment("big", model="Llama-3-70B", tensor_parallel=4, replicas=1, rate_rps=0.5,
                     slo=SloSpec(2.0, 0.05))  # fmt: skip
    prices = sheet(H100_SXM=PriceEntry(H100, "test sheet"), L4=PriceEntry(L4, "test sheet"))
    plan = assess(priced(big, prices=prices))
    item = plan.deployment("big")
    assert item.status == "ok"
    assert "hardware" not in item.strategies
    assert "hardware" not in item.config
    assert item.move == ""
    assert item.config_change.hardware is None
    assert not any(name.endswith("-nodes.yaml") for name in item.config_change.manifests)
    # L4 was looked at: the 70B fits 8 of them at FP8 or INT4, but none is cheaper within SLOs
    ctx = AssessmentContext(priced(big, prices=prices))
    resolved = ctx.resolved["big"]
    options = moves(ctx, resolved, [resolved.baseline])
    assert {m.config.hardware.name for m in options} == {"L4"}
    found = search(ctx, resolved, frozenset({"quantization", "batching"}))
    on_l4 = [c for c in found.candidates if c.sized.config.hardware.name == "L4"]
    assert all(not c.meets or c.sized.usd_per_month >= item.plan.usd_per_month for c in on_l4)  # type: ignore[union-attr]


def test_it_never_chooses_a_kind_absent_from_the_price_sheet() -> None:
    # L4 is cheaper by the catalog (and wins above), but this sheet offers L40S only
    prices = sheet(H100_SXM=PriceEntry(H100, "test sheet"), L40S=PriceEntry(L40S, "test sheet"))
    plan = assess(priced(idle_8b(), prices=prices))
    chat = plan.deployment("chat")
    assert chat.config["hardware"] == "L40S"
    assert chat.plan is not None
    assert chat.plan.usd_per_month == pytest.approx(2 * L40S * HOURS)  # $2,190
    assert not any("L4 " in a.label for a in chat.pareto)
    ctx = AssessmentContext(priced(idle_8b(), prices=prices))
    assert [h.name for h in available(ctx, ctx.resolved["chat"])] == ["L40S"]


def test_it_does_not_offer_a_kind_whose_price_was_defaulted() -> None:
    prices = sheet(
        H100_SXM=PriceEntry(H100, "test sheet"), L4=PriceEntry(L4, "catalog", defaulted=True)
    )
    ctx = AssessmentContext(priced(idle_8b(), prices=prices))
    assert available(ctx, ctx.resolved["chat"]) == ()


def test_it_respects_a_kinds_count_limit_across_the_fleet() -> None:
    # two idle deployments each want 2 L4s; the sheet has 3: the first takes 2, the second
    # cannot fit its redundancy floor of 2 in the 1 left and goes to L40S
    prices = {**ALL_THREE, "L4": PriceEntry(L4, "test sheet", max_gpus=3)}
    plan = assess(
        priced(idle_8b("a", seed=1), idle_8b("b", seed=2), prices=prices,
               strategies=("batching", "quantization", "autoscaling", "speculative")),
    )  # fmt: skip
    # the same saving either way: the tie goes by name
    assert [plan.deployment(n).config["hardware"] for n in ("a", "b")] == ["L4", "L40S"]
    on_l4 = [p for p in plan.deployments if p.config.get("hardware") == "L4"]
    assert sum(p.plan.gpus_peak for p in on_l4 if p.plan) == 2.0
    assert plan.fleet_plan.usd_per_month == pytest.approx((2 * L4 + 2 * L40S) * HOURS)


def test_it_leaves_out_a_kind_whose_limit_cannot_hold_the_redundancy_floor() -> None:
    prices = {**ALL_THREE, "L4": PriceEntry(L4, "test sheet", max_gpus=1)}
    ctx = AssessmentContext(priced(idle_8b(), prices=prices))
    item = ctx.resolved["chat"]
    assert {m.config.hardware.name for m in moves(ctx, item, [item.baseline])} == {"L40S"}
    assert assess(priced(idle_8b(), prices=prices)).deployment("chat").config["hardware"] == "L40S"


def test_its_cost_bound_never_exceeds_the_simulated_cost() -> None:
    ctx = AssessmentContext(priced(deployment("busy", rate_rps=40, replicas=4), prices=ALL_THREE))
    item = ctx.resolved["busy"]
    options = moves(ctx, item, [item.baseline])
    assert len(options) >= 3
    for option in options:
        sized = size_fixed(ctx, item, option.config)
        if sized.meets:
            assert option.bound_usd_per_month <= sized.usd_per_month + 1e-6
    # by hand for L40S TP1 BF16: 2 x 7.505e9 matmul params x (prompt + output tokens) FLOPs
    # per request at 362 TFLOP/s x the profile's compute efficiency
    l40s = next(o for o in options if o.config.hardware.name == "L40S" and o.config.gpus == 1)
    flops = 362e12 * ctx.profiles.lookup("L40S", "vllm").compute_efficiency
    tokens = item.shape.mean_prompt_tokens + item.shape.mean_output_tokens
    per_request_s = 2 * 7_504_924_672 * tokens / flops
    replicas = math.ceil(item.load.mean_rps * per_request_s)
    assert lower_bound_usd_per_month(ctx, item, l40s.config) == pytest.approx(
        max(replicas, 2) * L40S * HOURS
    )


def test_it_checks_a_price_rows_count_limit_and_other_prices() -> None:
    with pytest.raises(ScenarioError, match=r"^max_gpus: must be an integer >= 1, got 0$"):
        PriceEntry(1.0, "sheet", max_gpus=0)
    with pytest.raises(ScenarioError, match=r"^spot_usd_per_gpu_hour: must be "):
        PriceEntry(1.0, "sheet", spot_usd_per_gpu_hour=-1.0)
    entry = PriceEntry(1.0, "sheet", max_gpus=8, reserved_usd_per_gpu_hour=0.7)
    base = priced(idle_8b(), prices={"L4": entry})
    again = Scenario.from_json(base.to_json())
    assert again.prices["L4"] == entry
    data = base.to_dict()
    data["prices"]["L4"]["max_gpus"] = 1.5
    with pytest.raises(ScenarioError, match=r"^prices\.L4\.max_gpus: must be an integer"):
        Scenario.from_dict(data)


def test_its_bound_counts_only_prompt_tokens_no_cache_could_spare() -> None:
    # four 8-token prompts in 4-token blocks: the first block is a shared system prompt
    sample = Workload(
        np.arange(4, dtype=np.float64),
        np.full(4, 8),
        np.full(4, 2),
        prefix=PrefixBlocks.from_lists(4, [[1, 10], [1, 11], [1, 12], [1, 13]]),
    )
    shape = WorkloadShape(sample, mean_output_tokens=2.0, mean_prompt_tokens=8.0)
    item = cast(Resolved, SimpleNamespace(shape=shape))
    # blocks 2-4 of block 1 are found (4 tokens each): 12 of 32 prompt tokens spared
    assert fewest_prefill_tokens(item) == pytest.approx((32 - 12) / 4)
    plain = cast(
        Resolved, SimpleNamespace(shape=WorkloadShape(replace(sample, prefix=None), 2.0, 8.0))
    )
    assert fewest_prefill_tokens(plain) == 8.0


def _choosing(choice: GpuKindChoice, **options: object) -> Scenario:
    chosen = replace(idle_8b(), gpu_kinds=choice)
    return priced(chosen, prices=ALL_THREE, **options)


@pytest.mark.parametrize(
    ("choice", "options", "kinds", "today"),
    [
        (GpuKindChoice(), {}, ["L4", "L40S"], True),
        (GpuKindChoice(pin=("L40S",)), {}, ["L40S"], True),
        (GpuKindChoice(exclude=("L4",)), {}, ["L40S"], True),
        (GpuKindChoice(exclude=("H100-SXM",)), {}, ["L4", "L40S"], False),
        # a pinned kind the sheet does not offer adds nothing
        (GpuKindChoice(pin=("A100-80GB", "L4")), {}, ["L4"], True),
        (GpuKindChoice(), {"hardware_moves": False}, [], True),
        (GpuKindChoice(exclude=("H100-SXM",)), {"hardware_moves": False}, [], False),
    ],
)
def test_it_offers_only_the_kinds_the_user_allows(
    choice: GpuKindChoice, options: dict[str, object], kinds: list[str], today: bool
) -> None:
    ctx = AssessmentContext(_choosing(choice, **options))
    item = ctx.resolved["chat"]
    assert [h.name for h in available(ctx, item)] == kinds
    assert today_allowed(ctx, item) is today


def test_it_moves_to_the_next_cheapest_kind_when_the_cheapest_is_excluded() -> None:
    chat = assess(_choosing(GpuKindChoice(exclude=("L4",)))).deployment("chat")
    assert (chat.config["hardware"], chat.config["weight_dtype"]) == ("L40S", "bf16")
    assert chat.plan is not None
    assert chat.plan.usd_per_month == pytest.approx(2 * L40S * HOURS)  # $2,190


def test_it_moves_only_to_a_pinned_kind() -> None:
    plan = assess(_choosing(GpuKindChoice(pin=("L40S",), exclude=("L4",))))
    assert "chat: moves to other GPU kinds only to L40S; never to L4" in plan.assumptions
    chat = plan.deployment("chat")
    assert chat.config["hardware"] == "L40S"
    assert chat.plan is not None
    assert chat.plan.usd_per_month == pytest.approx(2 * L40S * HOURS)


def test_it_keeps_todays_kind_when_the_lever_is_off() -> None:
    plan = assess(_choosing(GpuKindChoice(), hardware_moves=False))
    chat = plan.deployment("chat")
    assert "hardware" not in chat.config
    assert chat.move == ""
    assert chat.plan is not None
    assert chat.plan.usd_per_month == pytest.approx(2 * H100 * HOURS)  # $5,840
    assert not any("hardware" in row.strategies for row in plan.combinations)
    assert "moves to other GPU kinds: off (every deployment keeps its kind)" in plan.assumptions
    assert not any(a.startswith("GPU kinds a deployment may move to") for a in plan.assumptions)


def test_excluding_todays_kind_makes_the_plan_move() -> None:
    chat = assess(_choosing(GpuKindChoice(exclude=("H100-SXM",)))).deployment("chat")
    assert chat.status == "ok"
    assert chat.config["hardware"] == "L4"
    assert chat.plan is not None
    assert chat.plan.usd_per_month == pytest.approx(2 * L4 * HOURS)  # $1,168


@pytest.mark.parametrize(
    ("choice", "options", "tail"),
    [
        (GpuKindChoice(exclude=("H100-SXM", "L4", "L40S")), {}, ""),
        (GpuKindChoice(exclude=("H100-SXM",)), {"hardware_moves": False},
         " (the hardware lever is off)"),
    ],
)  # fmt: skip
def test_it_reports_no_configuration_when_no_allowed_kind_is_left(
    choice: GpuKindChoice, options: dict[str, object], tail: str
) -> None:
    plan = assess(_choosing(choice, **options))
    chat = plan.deployment("chat")
    assert chat.status == "no_feasible_configuration"
    assert chat.plan is None
    assert chat.closest is None
    assert chat.message == (
        "no configuration is allowed for chat: its gpu_kinds exclude today's H100-SXM, and "
        f"no other kind the price sheet offers and gpu_kinds allows serves it{tail}"
    )
    assert plan.messages == (f"chat: {chat.message}",)
    # the fleet's plan keeps what runs today: nothing was found to replace it
    assert plan.fleet_plan.usd_per_month == pytest.approx(2 * H100 * HOURS)
