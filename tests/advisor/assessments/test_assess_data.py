"""Assessment inputs from the database: measured usage, derived workloads, fleet, data gaps."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest

from advisor.models import CalibrationRecord, DeploymentSlo
from advisor.selectors.assessment_fleet import Price, fleet_of
from advisor.selectors.assessment_measured import gpu_telemetry_in_window, usage_measured
from advisor.selectors.assessment_workload import (
    PREFIX_UNKNOWN,
    DataGap,
    DerivedWorkload,
    workload_derive,
)
from advisor.services.assessment_engine import scenario_build
from probes.agent.vllm_metrics import Histogram
from probes.models import EngineRollup, GpuRollup, ModelDeployment, PriceSheet, RequestRecord
from tests.advisor.assessments.fleet import PRICE_USD, TRACE_END, LabFleet, fleet_build

START = TRACE_END - timedelta(days=7)


@pytest.fixture
def lab(db: Any) -> LabFleet:
    return fleet_build()


def _derive(fleet: LabFleet, deployment: ModelDeployment) -> DerivedWorkload | DataGap:
    ids = list(deployment.gpus.values_list("id", flat=True))
    telemetry = gpu_telemetry_in_window(gpu_ids=ids, start=START, end=TRACE_END)
    hours = max(t.hours_observed for t in telemetry.values())
    return workload_derive(
        deployment=deployment, gpu_ids=ids, gpu_hours_observed=float(hours), start=START,
        end=TRACE_END, seed=1,
    )  # fmt: skip


def test_it_measures_utilization_and_cost_exactly_from_the_samples(lab: LabFleet) -> None:
    ids = [gpu.pk for gpu in lab.gpus]
    telemetry = gpu_telemetry_in_window(gpu_ids=ids, start=START, end=TRACE_END)
    for gpu_id, util in lab.util.items():
        assert telemetry[gpu_id].sample_count == util.size
        assert telemetry[gpu_id].util_mean_pct == util.sum() / util.size
        assert telemetry[gpu_id].sources == ("samples",)
    assert [telemetry[g.pk].hours_observed for g in lab.gpus] == [168, 168, 168, 2]
    price = float(PRICE_USD)
    usage = usage_measured(
        telemetry=telemetry, gpu_ids=ids, price_usd_per_gpu_hour=dict.fromkeys(ids, price),
        start=START, end=TRACE_END,
    )  # fmt: skip
    every = np.concatenate(list(lab.util.values()))
    assert usage.util_mean_pct == every.sum() / every.size
    assert usage.gpu_hours == 3 * 168 + 2
    assert usage.cost_usd == price * (3 * 168 + 2)
    assert usage.usd_per_month == pytest.approx(price * (3 * 168 + 2) / 168 * 730)


def test_it_reads_hour_rollups_for_the_hours_before_the_first_sample(lab: LabFleet) -> None:
    gpu = lab.gpus[-1]  # samples only in the last 2 hours
    GpuRollup.objects.filter(gpu=gpu).delete()
    for hour in range(5):
        GpuRollup.objects.create(
            gpu=gpu, resolution="1h", bucket_start=START + timedelta(hours=hour),
            sample_count=60, util_mean_pct=10.0 * hour, util_p95_pct=0, util_max_pct=0,
            mem_used_mean_bytes=0, mem_used_max_bytes=0,
        )  # fmt: skip
    row = gpu_telemetry_in_window(gpu_ids=[gpu.pk], start=START, end=TRACE_END)[gpu.pk]
    util = lab.util[gpu.pk]
    assert row.sample_count == 300 + util.size
    assert row.util_sum_pct == 60 * (0 + 10 + 20 + 30 + 40) + util.sum()
    assert row.hours_observed == 7
    assert row.sources == ("hour rollups", "samples")


def test_it_derives_the_workload_from_the_imported_trace_and_the_gpu_load(
    lab: LabFleet,
) -> None:
    derived = _derive(lab, lab.chat)
    assert isinstance(derived, DerivedWorkload)
    records = RequestRecord.objects.filter(deployment=lab.chat).order_by("arrival_ts")
    count = records.count()
    assert derived.request_records == count == 19366
    # 1-minute resolution over the whole week; the trace's own minutes hold its exact counts.
    assert derived.rate_rps.size == 7 * 24 * 60
    assert derived.covered_minutes == 60
    trace_minutes = slice(7 * 1440 - 105, 7 * 1440 - 45)  # 18:15 .. 19:14
    assert derived.rate_rps[trace_minutes].sum() * 60 == pytest.approx(count)
    assert derived.rate_source.startswith("request records; ")
    assert "utilization of its GPUs" in derived.rate_source
    # The sample is the trace itself (fewer than SAMPLE_MAX requests), in arrival order.
    prompts = np.array(list(records.values_list("prompt_tokens", flat=True)))
    assert np.array_equal(np.sort(derived.prompt_tokens), np.sort(prompts))
    assert derived.sample_arrival_s[0] == 0.0
    assert 3500 < derived.sample_arrival_s[-1] < 3600
    assert 0.05 <= derived.burstiness <= 20.0
    assert "inter-arrival" in derived.burstiness_source
    assert derived.weekly_shape is not None
    assert len(derived.weekly_shape) == 168
    assert np.mean(derived.weekly_shape) == pytest.approx(1.0)
    assert np.mean(derived.daily_shape) == pytest.approx(1.0)


def test_it_carries_the_records_block_hashes_into_the_sample(lab: LabFleet) -> None:
    plain = _derive(lab, lab.chat)
    assert isinstance(plain, DerivedWorkload)
    assert plain.prefix is None
    assert plain.prefix_source == PREFIX_UNKNOWN
    assert plain.summary()["prefix_reuse_share"] is None
    # given: the long prompts of the trace share their first two 512-token blocks
    records = RequestRecord.objects.filter(deployment=lab.chat)
    long = records.filter(prompt_tokens__gte=1024)
    hashed = long.update(prefix_block_hashes=[7, 8], prefix_block_tokens=512)
    derived = _derive(lab, lab.chat)
    assert isinstance(derived, DerivedWorkload)
    assert derived.prefix is not None
    assert derived.prefix.block_tokens == 512
    rows = [derived.prefix.row(i).tolist() for i in range(derived.prefix.num_requests)]
    assert rows == [[7, 8] if p >= 1024 else [] for p in derived.prompt_tokens.tolist()]
    assert derived.prefix_source == (
        f"prompt block hashes of {hashed} of the 19366 sampled requests (512-token blocks); "
        "the others count as not reused"
    )
    # every long prompt but the first reuses its 1024 tokens
    share = 1024 * (hashed - 1) / float(derived.prompt_tokens.sum())
    assert derived.prefix_reuse_share == pytest.approx(share)


def test_it_answers_missing_data_instead_of_failing(lab: LabFleet) -> None:
    gap = _derive(lab, lab.sparse)
    assert isinstance(gap, DataGap)
    assert gap.message == (
        "deployment llama-8b has 2 h of telemetry and no request records; "
        "needs >= 24 h or an imported trace"
    )
    assert len(gap.missing) == 3  # load history, request counts, request lengths
    assert gap.have["gpu_telemetry_hours"] == 2


def _hist(bounds: list[float], counts: list[float]) -> dict[str, object]:
    cumulative = np.cumsum(counts).tolist()
    pairs = zip([*bounds, float("inf")], cumulative, strict=True)
    return Histogram(tuple(pairs), 0.0, cumulative[-1]).to_json()


def test_it_draws_lengths_from_vllm_histograms_when_no_records_exist(lab: LabFleet) -> None:
    # 30 hours of vLLM counters and length histograms for the sparse deployment.
    for hour in range(30):
        bucket = TRACE_END - timedelta(hours=30 - hour)
        EngineRollup.objects.create(
            deployment=lab.sparse, resolution="1h", bucket_start=bucket, sample_count=360,
            running_mean=1, running_max=2, waiting_mean=0, waiting_max=0, requests=3600.0,
            histograms={
                "request_prompt_tokens": _hist([100, 1000], [0, 3600, 0]),
                "request_generation_tokens": _hist([10, 100], [1800, 1800, 0]),
            },
        )  # fmt: skip
    derived = _derive(lab, lab.sparse)
    assert isinstance(derived, DerivedWorkload)
    assert derived.rate_source.startswith("vLLM request counters")
    assert derived.rate_rps[-30 * 60 :].tolist() == [1.0] * 1800
    assert derived.lengths_source.startswith("vLLM token histograms (108000 requests")
    assert derived.prompt_tokens.size == 20_000
    assert derived.prompt_tokens.min() >= 100
    assert derived.prompt_tokens.max() <= 1000
    assert derived.output_tokens.max() <= 100
    assert derived.burstiness == 1.0
    assert derived.burstiness_source.startswith("assumed Poisson")


def test_it_reads_the_fleet_prices_slos_and_calibration(lab: LabFleet) -> None:
    DeploymentSlo.objects.create(deployment=lab.chat, ttft_p95_s=0.5)
    record = CalibrationRecord.objects.create(
        hardware="H100-SXM", profile={"hardware": "H100-SXM", "engine": "vllm",
                                      "bw_efficiency": 0.8, "compute_efficiency": 0.5},
        fitted=[], errors=[], fit_median_ape=0.07, fit_mean_ape=0.09, points=[],
    )  # fmt: skip
    fleet = fleet_of(cluster=lab.cluster)
    price = fleet.prices["H100-SXM"]
    assert (price.usd_per_gpu_hour, price.as_of, price.from_price_sheet) == (
        4.25, "2023-11-01", True,
    )  # fmt: skip
    assert price.source == "test contract, 2023-11-01"
    assert fleet.gpus_per_node_and_kind() == [
        {"node": "lab-0", "kind": "H100-SXM", "gpus": 2},
        {"node": "lab-1", "kind": "H100-SXM", "gpus": 2},
    ]
    chat = next(d for d in fleet.deployments if d.served_name == "chat")
    assert chat.model is not None
    assert chat.model.name == "Llama-3-8B"
    assert chat.engine_args == {"max_num_seqs": 256, "max_num_batched_tokens": 8192}
    assert (chat.slo["ttft_p95_s"].value, chat.slo["ttft_p95_s"].is_default) == (0.5, False)
    assert (chat.slo["tpot_p95_s"].value, chat.slo["tpot_p95_s"].is_default) == (0.1, True)
    calibration = fleet.calibrations["H100-SXM"]
    assert (calibration.record_id, calibration.fit_median_ape) == (record.pk, 0.07)
    assert calibration.profile.bw_efficiency == 0.8


def test_it_offers_the_price_sheets_other_gpu_kinds_to_the_planner(lab: LabFleet) -> None:
    as_of = date(2023, 11, 2)
    PriceSheet.objects.create(gpu_kind="L4", usd_per_gpu_hour="0.8000", source="quote",
                              as_of=as_of)  # fmt: skip
    PriceSheet.objects.create(gpu_kind="Acme X1", usd_per_gpu_hour="0.1000", source="quote",
                              as_of=as_of)  # fmt: skip
    fleet = fleet_of(cluster=lab.cluster)
    assert list(fleet.prices) == ["H100-SXM"]  # what the cluster runs
    assert fleet.offered == {"L4": Price("L4", 0.8, "quote, 2023-11-02", "2023-11-02", True)}
    workload = _derive(lab, lab.chat)
    assert isinstance(workload, DerivedWorkload)
    scenario, _ = scenario_build(fleet=fleet, workloads=[workload], start=START, end=TRACE_END)
    assert scenario is not None
    assert sorted(scenario.prices) == ["H100-SXM", "L4"]
    l4 = scenario.prices["L4"]
    assert (l4.usd_per_gpu_hour, l4.defaulted) == (0.8, False)
    assert l4.source == "quote, 2023-11-02 (as of 2023-11-02)"


def test_it_names_a_deployment_whose_model_the_engine_does_not_know(lab: LabFleet) -> None:
    ModelDeployment.objects.filter(pk=lab.sparse.pk).update(model_id="acme/secret-model")
    fleet = fleet_of(cluster=lab.cluster)
    sparse = next(d for d in fleet.deployments if d.served_name == "llama-8b")
    assert sparse.problems == (
        "model 'acme/secret-model' is not in the engine's catalog and no config.json was "
        "reported: upload one on its page",
    )
