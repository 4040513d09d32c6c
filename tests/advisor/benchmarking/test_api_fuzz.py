"""Fuzzing the job-creation API: whatever the body, a 201 or a 400 naming a field, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.models import BenchmarkEndpoint, BenchmarkJob
from advisor.tasks.bench import run_benchmark_job
from tests.advisor.benchmarking.conftest import make_endpoint

FIELDS = ("endpoint", "kind", "workload", "trace", "sweep", "goodput", "ab", "slo", "options",
          "max_concurrency", "max_duration_s")  # fmt: skip
WORKLOAD_KEYS = ("kind", "num_requests", "rate_rps", "burstiness", "concurrency",
                 "prompt_tokens", "output_tokens", "range_ratio", "time_scale", "seed")  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**7), st.floats(allow_nan=False),
    st.sampled_from(["poisson", "concurrency", "replay", "rate", "run", "sweep", "goodput",
                     "ab", "inf", "", "2025-01-01T00:00:00Z"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from((*WORKLOAD_KEYS, "over", "values", "ttft_ms", "x")), inner, max_size=5
        )
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS))


@pytest.fixture
def dead_endpoint(db: Any) -> BenchmarkEndpoint:
    return make_endpoint("http://127.0.0.1:9")


@pytest.fixture
def operator_client(bob: User, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setattr(run_benchmark_job, "apply_async_on_commit", lambda *args, **kwargs: None)
    client = Client()
    client.force_login(bob)
    return client


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, valid_endpoint=st.booleans())
def test_it_answers_any_body_with_201_or_a_named_field(
    operator_client: Client,
    dead_endpoint: BenchmarkEndpoint,
    body: dict[str, Any],
    valid_endpoint: bool,
) -> None:
    endpoint = dead_endpoint
    if valid_endpoint:
        body = {**body, "endpoint": endpoint.id}
    before = BenchmarkJob.objects.count()
    response = operator_client.post(
        "/api/v1/benchmarks/", json.dumps(body), content_type="application/json"
    )

    assert response.status_code in (201, 400), response.content
    if response.status_code == 400:
        errors = response.json()["errors"]
        assert errors[0]["field"]
        assert errors[0]["message"]
        assert BenchmarkJob.objects.count() == before
    else:
        assert BenchmarkJob.objects.count() == before + 1
