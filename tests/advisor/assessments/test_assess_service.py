"""Assessment plumbing in-process (tasks run eagerly): claim, failure, gaps, trend, schedules.

The engine's answer is replaced by a fixed outcome here, so these tests look only at what the
service stores around it; the e2e test runs the real engine on a real worker.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from advisor.engine.scenario import Scenario
from advisor.models import Assessment, AssessmentSchedule, AssessmentStatus, DeploymentSlo
from advisor.services import assessments
from advisor.services.assessment_engine import EngineOutcome, engine_args_read
from advisor.tasks.sim import assessment_run
from probes.models import Cluster, EngineRollup, RequestRecord, TraceFormat
from probes.services import import_trace
from tests.advisor.assessments.fleet import AZURE_CONV, TRACE_END, LabFleet, fleet_build


def _outcome(usd_per_month: float) -> EngineOutcome:
    return EngineOutcome(
        engine_version="test",
        baseline={"deployments": {"chat": {"util_pct": 30.0, "usd_per_month": 9000.0}}},
        strategies={"chat": {}},
        plan={"savings_usd_per_month": 9000.0 - usd_per_month, "fleet_plan": {}},
    )


def _run(capture: Any, **kwargs: Any) -> Assessment:
    """Create an assessment and run what it queues on commit (here, in this process)."""
    with capture(execute=True):
        assessment = assessments.assessment_create(cluster="lab", window="2d", **kwargs)
    assessment.refresh_from_db()
    return assessment


@pytest.fixture
def lab(db: Any, monkeypatch: pytest.MonkeyPatch) -> LabFleet:
    calls: list[Any] = []

    def fake_run(scenario: Any, *, progress: Any) -> EngineOutcome:
        calls.append(scenario)
        return _outcome(6000.0)

    monkeypatch.setattr(assessments, "scenario_run", fake_run)
    return fleet_build(days=2, interval_s=300)


def test_it_stores_measured_usage_gaps_and_the_scenario(
    lab: LabFleet, django_capture_on_commit_callbacks: Any
) -> None:
    assessment = _run(django_capture_on_commit_callbacks, end=TRACE_END)
    assert assessment.status == AssessmentStatus.COMPLETED
    assert (assessment.progress, assessment.progress_message) == (1.0, "done")
    assert [gap["deployment"] for gap in assessment.data_gaps] == ["llama-8b"]
    assert set(assessment.measured["deployments"]) == {"chat", "llama-8b"}
    parsed = Scenario.from_json(assessment.scenario)  # the snapshot reads back as stored
    assert parsed.to_json() == assessment.scenario
    assert parsed.digest() == assessment.scenario_digest
    scenario = json.loads(assessment.scenario)
    assert [d["name"] for d in scenario["deployments"]] == ["chat"]
    chat = scenario["deployments"][0]
    assert (chat["model"], chat["hardware"], chat["replicas"]) == ("Llama-3-8B", "H100-SXM", 3)
    assert chat["engine_args"]["max_num_seqs"] == 256
    assert len(chat["workload"]["load"]["rate_rps"]) == 2 * 1440
    assert chat["slo"]["defaulted"] == ["ttft_p95_s", "tpot_p95_s", "max_quality_loss_points"]
    assert scenario["prices"]["H100-SXM"]["usd_per_gpu_hour"] == 4.25
    assert assessment.gap["deployments"]["chat"]["util_simulated_pct"] == 30.0
    measured = assessment.measured["deployments"]["chat"]["util_mean_pct"]
    assert assessment.gap["deployments"]["chat"]["util_gap_pct_points"] == measured - 30.0
    assert set(assessment.timings) >= {"fleet_s", "measured_s", "workloads_s", "engine_s"}
    inputs = assessment.inputs["deployments"]["chat"]
    assert inputs["slo"]["ttft_p95_s"] == {"value": 2.0, "default": True}
    assert inputs["workload"]["request_records"] == 19366
    assert assessment.inputs["deployments"]["llama-8b"]["workload"] is None


def test_it_hands_the_traces_block_hashes_to_the_engine(
    lab: LabFleet, django_capture_on_commit_callbacks: Any
) -> None:
    plain = _run(django_capture_on_commit_callbacks, end=TRACE_END)
    sample = json.loads(plain.scenario)["deployments"][0]["workload"]["sample"]
    assert "prefix" not in sample
    assert plain.inputs["deployments"]["chat"]["workload"]["prefix_reuse_share"] is None
    assert json.loads(plain.scenario)["deployments"][0]["workload"]["source"].endswith(
        "; prefix reuse unknown: the request records carry no prompt block hashes"
    )
    # given: every trace request opens with the same 512-token block
    records = RequestRecord.objects.filter(deployment=lab.chat, prompt_tokens__gte=512)
    hashed = records.update(prefix_block_hashes=[42], prefix_block_tokens=512)
    assessment = _run(django_capture_on_commit_callbacks, end=TRACE_END + timedelta(hours=1))
    sample = json.loads(assessment.scenario)["deployments"][0]["workload"]["sample"]
    assert sample["prefix"]["block_tokens"] == 512
    assert sample["prefix"]["hashes"] == [42] * hashed
    prompts = sample["prompt_tokens"]
    offsets = sample["prefix"]["offsets"]
    assert [offsets[i + 1] - offsets[i] for i in range(len(prompts))] == [
        1 if p >= 512 else 0 for p in prompts
    ]
    share = assessment.inputs["deployments"]["chat"]["workload"]["prefix_reuse_share"]
    assert share == pytest.approx(512 * (hashed - 1) / sum(prompts))


def test_it_claims_a_row_once_and_fails_loudly(
    lab: LabFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assessments, "_queue_run", lambda assessment_id: None)
    assessment = assessments.assessment_create(cluster="lab", window="2d", end=TRACE_END)

    def broken(scenario: Any, *, progress: Any) -> EngineOutcome:
        raise RuntimeError("boom")

    monkeypatch.setattr(assessments, "scenario_run", broken)
    with pytest.raises(RuntimeError):
        assessment_run(assessment.pk)
    assessment.refresh_from_db()
    assert assessment.status == AssessmentStatus.FAILED
    assert assessment.error == "internal error: RuntimeError: boom"
    assert assessment_run(assessment.pk) == "not queued (already claimed or gone)"


def test_it_links_each_assessment_to_the_previous_for_a_trend(
    lab: LabFleet, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    first = _run(django_capture_on_commit_callbacks, end=TRACE_END)
    monkeypatch.setattr(assessments, "scenario_run", lambda scenario, progress: _outcome(5000.0))
    second = _run(django_capture_on_commit_callbacks, end=TRACE_END + timedelta(hours=1))
    assert second.previous == first
    trend = second.trend
    assert trend["previous_id"] == first.pk
    before = first.measured["fleet"]["usd_per_month"]
    now = second.measured["fleet"]["usd_per_month"]
    assert trend["usd_per_month"] == [before, now]
    assert trend["savings_realized_usd_per_month"] == before - now
    assert trend["savings_projected_then_usd_per_month"] == 3000.0
    assert trend["savings_projected_now_usd_per_month"] == 4000.0


def test_it_schedules_a_weekly_assessment_per_cluster(lab: LabFleet) -> None:
    Cluster.objects.create(name="other")
    assert assessments.schedules_ensure() == 2
    assert assessments.schedules_ensure() == 0
    schedule = AssessmentSchedule.objects.get(cluster=lab.cluster)
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert task.task == "advisor.tasks.sim.assessment_scheduled"
    assert json.loads(task.kwargs) == {"schedule_id": schedule.pk}
    assert (task.crontab.day_of_week, task.crontab.hour, task.queue) == ("1", "6", "sim")
    created = assessments.assessment_scheduled_create(schedule_id=schedule.pk)
    assert created is not None
    assert (created.schedule, created.cluster) == (schedule, lab.cluster)
    assert created.window_end - created.window_start == timedelta(days=7)
    with pytest.raises(assessments.AssessmentInputError, match="window_days"):
        assessments.schedule_save(cluster=lab.cluster, window_days=0)
    assert AssessmentSchedule.objects.get(cluster=lab.cluster).window_days == 7


def test_it_refuses_engine_args_the_engine_cannot_read_and_goes_on(
    lab: LabFleet, django_capture_on_commit_callbacks: Any
) -> None:
    lab.chat.engine_args = {"max_num_seqs": "many"}
    lab.chat.save()
    assessment = _run(django_capture_on_commit_callbacks, end=TRACE_END)
    assert assessment.status == AssessmentStatus.COMPLETED
    messages = {gap["deployment"]: gap["message"] for gap in assessment.data_gaps}
    assert messages["chat"] == (
        "deployment chat: engine_args.max_num_seqs: must be an integer >= 1, got 'many'"
    )
    assert assessment.scenario == ""
    assert assessment.progress_message == "no deployment has enough data to assess"


@pytest.mark.parametrize(
    ("raw", "enabled"),
    [
        ({}, True),
        ({"enable-prefix-caching": False}, False),
        ({"no-enable-prefix-caching": True}, False),
        ({"enable_prefix_caching": True}, True),
    ],
)
def test_it_reads_whether_the_deployment_caches_prefixes(
    raw: dict[str, Any], enabled: bool
) -> None:
    assert engine_args_read(raw).enable_prefix_caching is enabled


@pytest.mark.parametrize(
    ("raw", "gib"),
    [({}, 0.0), ({"kv-offloading-size": 32}, 32.0), ({"kv_offloading_size": "None"}, 0.0)],
)
def test_it_reads_the_host_memory_for_kv_offload(raw: dict[str, Any], gib: float) -> None:
    assert engine_args_read(raw).kv_offload_gib == gib


def test_it_passes_measured_speculative_acceptance_to_the_engine(
    lab: LabFleet, django_capture_on_commit_callbacks: Any
) -> None:
    lab.chat.engine_args = {
        "max_num_seqs": 256,
        "speculative_config": {"method": "ngram", "num_speculative_tokens": 4,
                               "prompt_lookup_max": 4},
    }  # fmt: skip
    lab.chat.save()
    for hour in range(1, 4):
        EngineRollup.objects.create(
            deployment=lab.chat, resolution="1h", bucket_start=TRACE_END - timedelta(hours=hour),
            sample_count=360, running_mean=1, running_max=2, waiting_mean=0, waiting_max=0,
            spec_decode_drafts=100.0, spec_decode_draft_tokens=400.0,
            spec_decode_accepted_tokens=150.0,
        )  # fmt: skip
    assessment = _run(django_capture_on_commit_callbacks, end=TRACE_END)
    chat = json.loads(assessment.scenario)["deployments"][0]
    assert chat["spec_decode"] == {
        "method": "ngram", "num_speculative_tokens": 4, "num_drafts": 300,
        "num_draft_tokens": 1200, "num_accepted_tokens": 450,
    }  # fmt: skip
    assert chat["engine_args"]["speculative_config"]["method"] == "ngram"


def test_an_assessment_after_an_end_now_import_uses_the_azure_trace(
    db: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Issue 16 item 2: the Azure 2023 trace, imported as is, is outside every window."""
    monkeypatch.setattr(assessments, "scenario_run", lambda scenario, progress: _outcome(6000.0))
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    lab = fleet_build(days=2, interval_s=300, end=hour)  # imports the trace unshifted (2023)
    before = _run(django_capture_on_commit_callbacks)
    gaps = {gap["deployment"]: gap["message"] for gap in before.data_gaps}
    assert gaps["chat"].endswith(
        "; its imported trace AzureLLMInferenceTrace_conv.csv (2023-11-16 18:15 to 2023-11-16 "
        f"19:14 UTC) lies outside this window ({before.window_start:%Y-%m-%d %H:%M} to "
        f"{before.window_end:%Y-%m-%d %H:%M} UTC): import it again shifted to end now"
    )
    with django_capture_on_commit_callbacks(execute=True):
        report = import_trace(
            deployment=lab.chat, file=AZURE_CONV, format=TraceFormat.AZURE, shift_end_now=True
        )
    assert report.ok
    assert report.warning is None
    after = _run(django_capture_on_commit_callbacks)
    assert after.status == AssessmentStatus.COMPLETED
    assert [gap["deployment"] for gap in after.data_gaps] == ["llama-8b"]
    workload = after.inputs["deployments"]["chat"]["workload"]
    assert workload["request_records"] == 19366  # all of it: it ends before the window does


def test_it_passes_the_redundancy_rule_set_with_the_slos_to_the_engine(
    lab: LabFleet, django_capture_on_commit_callbacks: Any
) -> None:
    DeploymentSlo.objects.create(deployment=lab.chat, min_replicas=3)
    assessment = _run(django_capture_on_commit_callbacks, end=TRACE_END)
    chat = json.loads(assessment.scenario)["deployments"][0]
    assert chat["slo"]["min_replicas"] == 3
    assert assessment.inputs["deployments"]["chat"]["min_replicas"] == {
        "value": 3, "default": False,
    }  # fmt: skip
    DeploymentSlo.objects.filter(deployment=lab.chat).update(min_replicas=None)
    again = _run(django_capture_on_commit_callbacks, end=TRACE_END + timedelta(hours=1))
    assert json.loads(again.scenario)["deployments"][0]["slo"]["min_replicas"] is None
    assert again.inputs["deployments"]["chat"]["min_replicas"] == {"value": None, "default": True}
