"""Advisor API routes (mounted under /api/v1/ by config.urls)."""

from django.urls import URLPattern, URLResolver, path

from advisor.api import assessments, benchmarks, rollouts

urlpatterns: list[URLPattern | URLResolver] = [
    path("assessments/", assessments.AssessmentListView.as_view(), name="assessments"),
    path(
        "assessments/<int:assessment_id>/",
        assessments.AssessmentDetailView.as_view(),
        name="assessment",
    ),
    path(
        "assessments/<int:assessment_id>/scenario/",
        assessments.AssessmentScenarioView.as_view(),
        name="assessment-scenario",
    ),
    path("benchmark-endpoints/", benchmarks.EndpointListView.as_view(), name="benchmark-endpoints"),
    path("benchmarks/", benchmarks.JobListView.as_view(), name="benchmarks"),
    path("benchmarks/<int:job_id>/", benchmarks.JobDetailView.as_view(), name="benchmark"),
    path(
        "benchmarks/<int:job_id>/cancel/",
        benchmarks.JobCancelView.as_view(),
        name="benchmark-cancel",
    ),
    path(
        "benchmarks/<int:job_id>/calibrate/",
        benchmarks.JobCalibrateView.as_view(),
        name="benchmark-calibrate",
    ),
    path(
        "benchmarks/<int:job_id>/export/",
        benchmarks.JobExportView.as_view(),
        name="benchmark-export",
    ),
    path(
        "benchmarks/<int:job_id>/runs/<int:run_id>/requests.csv",
        benchmarks.RunRequestsCsvView.as_view(),
        name="benchmark-run-requests",
    ),
    path("rollouts/", rollouts.RolloutListView.as_view(), name="rollouts"),
    path("rollouts/<int:rollout_id>/", rollouts.RolloutDetailView.as_view(), name="rollout"),
    path(
        "rollouts/<int:rollout_id>/approve/", rollouts.ApproveView.as_view(), name="rollout-approve"
    ),
    path("rollouts/<int:rollout_id>/start/", rollouts.StartView.as_view(), name="rollout-start"),
    path("rollouts/<int:rollout_id>/pause/", rollouts.PauseView.as_view(), name="rollout-pause"),
    path("rollouts/<int:rollout_id>/resume/", rollouts.ResumeView.as_view(), name="rollout-resume"),
    path("rollouts/<int:rollout_id>/abort/", rollouts.AbortView.as_view(), name="rollout-abort"),
    path(
        "rollouts/<int:rollout_id>/rollback/",
        rollouts.RollbackView.as_view(),
        name="rollout-rollback",
    ),
    path("rollout-ledger/", rollouts.LedgerListView.as_view(), name="rollout-ledger"),
]
