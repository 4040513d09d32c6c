"""Dashboard pages (mounted at the site root by config.urls).

URL keyword names say what they hold (`gpu_id`, `node_id`, ...): the URL-walk test
(tests/dashboard/test_access.py) fills them from its fixtures by name.
"""

from django.urls import URLPattern, URLResolver, path

from dashboard.views import fleet, gpus, traces

app_name = "dashboard"
urlpatterns: list[URLPattern | URLResolver] = [
    path("", fleet.fleet, name="home"),
    path("nodes/<int:node_id>/", gpus.node, name="node"),
    path("gpus/<int:gpu_id>/", gpus.gpu, name="gpu"),
    path("deployments/<int:deployment_id>/", gpus.deployment, name="deployment"),
    path("traces/", traces.traces, name="traces"),
    path("traces/import/", traces.trace_upload, name="trace-upload"),
]
