"""Advisor API routes (mounted under /api/v1/ by config.urls)."""

from django.urls import URLPattern, URLResolver, path

from advisor.api import assessments, benchmarks

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
]
