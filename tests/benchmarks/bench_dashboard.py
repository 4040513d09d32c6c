"""Dashboard benchmark: server time of the fleet overview on a 100-GPU, 30-day fleet.

Reproduce with `make bench` or, on its own,

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gca \
        .venv/bin/python -m tests.benchmarks bench_dashboard

It needs PostgreSQL (the target is stated for it; without a postgres DATABASE_URL it uses
the local one at 127.0.0.1:5432 if there is one) and uses its own database,
`<DATABASE_URL's name>_bench_dashboard`, kept between runs: the first run seeds 100 H100s
(25 nodes of 4) x 30 days of 1-minute GPU rollups (4,320,000 rows) plus the matching 1-hour
rollups (72,000 rows) with COPY (`dashboard.synthetic`, seed 7; a few minutes), later runs
reuse them. The price sheet prices the H100s.

Figures (server time: Django's test client calling the whole stack in-process, middleware,
view, queries and template, no network; a signed-in viewer; 3 warm-up requests, then 30
timed ones; the 95th percentile):
- `fleet_overview_p95_ms_30d`, `..._7d` (1-hour rollups) and `..._24h` (1-minute rollups:
  144,000 rows) for the windows ending at the data's end;
- `fleet_overview_p95_ms`: the worst of the three. Target <= 300.
The machine is shared: the load average at the start is printed beside the figures.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from tests.benchmarks import Figure
from tests.benchmarks.support import django_test_database

GPUS = 100
GPUS_PER_NODE = 4
DAYS = 30
END = datetime(2025, 1, 31, tzinfo=UTC)
WARMUP = 3
RUNS = 30
TARGET_MS = 300


def _seed() -> int:
    """Seed the fleet unless this database already holds it; returns rows written."""
    from django.db import connection

    from dashboard.synthetic import fleet_create, rollups_create
    from probes.models import GpuRollup, PriceSheet

    expected = GPUS * DAYS * 24 * 60
    present = GpuRollup.objects.filter(resolution="1m", gpu__node__cluster__name="bench").count()
    if present == expected:
        return 0
    GpuRollup.objects.filter(gpu__node__cluster__name="bench").delete()
    nodes = GPUS // GPUS_PER_NODE
    fleet = fleet_create(cluster_name="bench", nodes=nodes, gpus_per_node=GPUS_PER_NODE)
    written = rollups_create(gpus=fleet.gpus, start=END - timedelta(days=DAYS), end=END, seed=7)
    PriceSheet.objects.get_or_create(
        gpu_kind="H100-SXM",
        defaults={"usd_per_gpu_hour": "4.9163", "source": "bench", "as_of": date(2025, 1, 1)},
    )
    with connection.cursor() as cursor:
        cursor.execute(f'VACUUM ANALYZE "{GpuRollup._meta.db_table}"')
    return written


def _viewer() -> object:
    from django.contrib.auth.models import Group, User

    from probes.roles import VIEWER, ensure_roles

    ensure_roles()
    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get(name=VIEWER))
    return user


def _p95_ms(client: object, url: str) -> tuple[float, float]:
    for _ in range(WARMUP):
        response = client.get(url)  # type: ignore[attr-defined]
        assert response.status_code == 200, response.status_code
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        response = client.get(url)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - started) * 1000.0)
        assert response.status_code == 200
    times.sort()
    return times[round(0.95 * (len(times) - 1))], statistics.median(times)


def run() -> Iterator[Figure]:
    django_test_database(bench="bench_dashboard", suffix="bench_dashboard", keepdb=True)
    from django.db import connection
    from django.test import Client

    started = time.perf_counter()
    written = _seed()
    if written:
        print(f"# seeded {written} GPU rollups in {time.perf_counter() - started:.0f} s")
    print(f"# load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    client = Client()
    client.force_login(_viewer())  # type: ignore[arg-type]
    worst = 0.0
    for window in ("30d", "7d", "24h"):
        url = f"/?window={window}&end={END.isoformat().replace('+', '%2B')}"
        p95, median = _p95_ms(client, url)
        worst = max(worst, p95)
        print(f"# {window}: median {median:.0f} ms, p95 {p95:.0f} ms")
        yield Figure(f"fleet_overview_p95_ms_{window}", p95, "ms", f"<= {TARGET_MS}")
    yield Figure("fleet_overview_p95_ms", worst, "ms", f"<= {TARGET_MS}")
    connection.close()
