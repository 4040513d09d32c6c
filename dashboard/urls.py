"""Dashboard pages (mounted at the site root by config.urls).

URL keyword names say what they hold (`gpu_id`, `node_id`, ...): the URL-walk test
(tests/dashboard/test_access.py) fills them from its fixtures by name.
"""

from django.urls import URLPattern, URLResolver, path

from dashboard.views import assessments, benchmarks, fleet, gpus, reports, rollouts, traces, whatif

app_name = "dashboard"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", fleet.fleet, name="home"),
    path("gpus/", fleet.gpu_list, name="gpus"),
    path("nodes/<int:node_id>/", gpus.node, name="node"),
    path("gpus/<int:gpu_id>/", gpus.gpu, name="gpu"),
    path("deployments/<int:deployment_id>/", gpus.deployment, name="deployment"),
    path(
        "deployments/<int:deployment_id>/config/",
        gpus.deployment_config,
        name="deployment-config",
    ),
    path("traces/", traces.traces, name="traces"),
    path("traces/import/", traces.trace_upload, name="trace-upload"),
    path("assessments/", assessments.assessment_list, name="assessments"),
    path("assessments/<int:assessment_id>/", assessments.assessment_detail, name="assessment"),
    path(
        "assessments/<int:assessment_id>/progress.json",
        assessments.assessment_progress,
        name="assessment-progress",
    ),
    path(
        "assessments/<int:assessment_id>/whatif/",
        whatif.whatif_playground,
        name="assessment-whatif",
    ),
    path("whatifs/<int:whatif_id>/", whatif.whatif_detail, name="whatif"),
    path("whatifs/<int:whatif_id>/progress.json", whatif.whatif_progress, name="whatif-progress"),
    path("benchmarks/", benchmarks.benchmark_list, name="benchmarks"),
    path("benchmarks/compare/", benchmarks.benchmark_compare, name="benchmark-compare"),
    path("benchmarks/<int:job_id>/", benchmarks.benchmark_detail, name="benchmark"),
    path(
        "benchmarks/<int:job_id>/progress.json",
        benchmarks.benchmark_progress,
        name="benchmark-progress",
    ),
    path("reports/", reports.reports, name="reports"),
    path("reports/generate/", reports.report_generate, name="report-generate"),
    path("reports/<int:report_id>/pdf/", reports.report_pdf, name="report-pdf"),
    path("reports/schedules/<int:cluster_id>/", reports.schedule_edit, name="report-schedule"),
    path("rollouts/", rollouts.rollout_list, name="rollouts"),
    path("rollouts/new/", rollouts.rollout_new, name="rollout-new"),
    path("rollouts/ledger/", rollouts.rollout_ledger, name="rollout-ledger"),
    path("rollouts/<int:rollout_id>/", rollouts.rollout_detail, name="rollout"),
    path(
        "rollouts/<int:rollout_id>/status.json",
        rollouts.rollout_status_json,
        name="rollout-status",
    ),
]
