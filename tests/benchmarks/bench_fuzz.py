"""Reliability benchmark: schemathesis cases over every API operation, counting 5xx answers.

Reproduce with `make bench` or, on its own,

    DJANGO_SETTINGS_MODULE=config.test_settings .venv/bin/python -m tests.benchmarks bench_fuzz

It needs PostgreSQL (NUL characters in text reach the database only there; without a postgres
DATABASE_URL it uses the local one at 127.0.0.1:5432) and uses its own database,
`<DATABASE_URL's name>_bench_fuzz`, dropped and migrated afresh each run so a run starts from
the same rows. The whole Django stack answers in-process through its WSGI handler
(schemathesis' WSGI transport: middleware, session, CSRF, views, PostgreSQL; no network).

What is sent: the OpenAPI schema drf-spectacular generates, every operation, `CASES_PER_MODE`
positive and as many negative (schema-violating) cases each, derandomized (the same cases
every run), plus for each positive case with text in its query or body a copy whose strings
end in NUL (schemathesis draws a NUL in about one string in a hundred). Operations with
nothing to vary stop after their one distinct case. API operations carry an admin's session
cookie and CSRF token; the agent operations (ingest, agent config) a registered node's
bearer token. The harness's copy of the schema adds what the views read but the schema
leaves out (`_schema`: the bodies of the agent report, the rollout proposal and the rollout
actions; the `cluster` and `as` query parameters; that the ingest parser refuses unknown
fields), and lets positive cases name the seeded cluster, endpoint, node and rows (half the
cases of an operation with ids in its path), so they reach past "not found". Each rollout
action has a seeded rollout of its own, another admin's, put back before each case in a
state the action applies to (`ROLLOUT_STATES`); before each proposal, the seeded node's
pending rollouts end (a node serves one rollout).

Queueing is replaced by a no-op (`Task.apply_async`): a POST creates its rows and returns; no
assessment, benchmark or rollout step runs (an eager one per case would take the run hours).

Figures: `fuzz_cases` (requests sent; target >= 1000) and `fuzz_5xx` (answers >= 500; target
0). To stderr: the cases and 5xx per operation, each 5xx (method, path, status, a curl
reproduction, the innermost frame of our code in its traceback and the exception) and the
failures of the schemathesis checks worth reading (`default_checks`; they do not count
toward fuzz_5xx), one example of each kind per operation. The database is dropped at the end.
On 2 shared cores: 1,456 cases in 20-45 s (plus about 6 s of migrations).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.benchmarks import Figure
from tests.benchmarks.support import django_test_database

CASES_PER_MODE = 30
CSRF_TOKEN = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz"  # 32 characters: an unmasked secret
AGENT_SCHEME = "agentToken"  # probes.auth.NodeTokenScheme.name


@dataclass
class ServerError:
    operation: str
    status: int
    curl: str
    traceback: str


@dataclass(frozen=True)
class CheckFailure:
    operation: str
    title: str  # e.g. "ST105 Undocumented Content-Type"
    detail: str  # the check's message, first line
    status: int
    curl: str


@dataclass
class FuzzResult:
    cases: Counter[str] = field(default_factory=Counter)  # "POST /api/v1/..." -> requests sent
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (operation, status)
    server_errors: list[ServerError] = field(default_factory=list)
    check_failures: list[CheckFailure] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.cases.values())


@dataclass(frozen=True)
class Seeds:
    """Rows the positive cases may name, and the credentials every case carries."""

    cluster: str
    endpoint_id: int
    deployment_id: int
    node_id: int
    ids: dict[str, int]  # path parameter name -> the id of an existing row
    rollout_ids: dict[str, int]  # action -> a rollout in a state that action applies to
    session_id: str
    agent_token: str

    def path_parameters(self, path: str) -> dict[str, int]:
        """Ids of seeded rows for the parameters in `path` (a rollout action: its own rollout)."""
        found = {name: self.ids[name] for name in re.findall(r"{(\w+)}", path) if name in self.ids}
        action = path.rstrip("/").rsplit("/", 1)[-1]
        if "rollout_id" in found and action in self.rollout_ids:
            found["rollout_id"] = self.rollout_ids[action]
        return found


# The (status, paused) each rollout action's seeded rollout is put in, so that the action
# applies; each is proposed by another admin, on a node of its own (a node serves one rollout).
ROLLOUT_STATES = {
    "approve": ("pending", False),
    "start": ("pending", False),
    "abort": ("pending", False),
    "pause": ("progressing", False),
    "resume": ("progressing", True),
    "rollback": ("progressing", False),
}


def _seed() -> Seeds:
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.test import Client
    from django.utils import timezone

    from advisor.models import (
        Assessment,
        BenchmarkEndpoint,
        BenchmarkJob,
        BenchmarkRun,
    )
    from advisor.services.rollouts import rollout_propose
    from probes.agent.desired import Observed
    from probes.models import Gpu, ModelDeployment
    from probes.node_config import node_observed_config_store
    from probes.roles import ensure_roles
    from probes.services import node_register

    ensure_roles()
    admin = User.objects.create_superuser("fuzz-admin", "fuzz@example.org", "fuzz")
    proposer = User.objects.create_superuser("fuzz-proposer", "proposer@example.org", "fuzz")
    node, token = node_register(cluster_name="fuzz", hostname="fuzz-1")
    Gpu.objects.create(
        node=node, uuid="GPU-fuzz-0", index=0, model_name="NVIDIA H100 80GB HBM3",
        memory_bytes=80 * 2**30,
    )  # fmt: skip
    deployment = ModelDeployment.objects.create(
        cluster=node.cluster, served_name="llama", model_id="fake/model"
    )
    endpoint = BenchmarkEndpoint.objects.create(
        node=node, deployment=deployment, base_url="http://127.0.0.1:9"
    )
    now = timezone.now()
    job = BenchmarkJob.objects.create(
        endpoint=endpoint, kind="run", spec={}, max_concurrency=1, max_duration_s=60,
        status="completed", started_at=now - timedelta(minutes=5), finished_at=now,
    )  # fmt: skip
    run = BenchmarkRun.objects.create(
        job=job, sequence=0, label="run", status="completed", started_at=now - timedelta(minutes=5),
        duration_s=60.0, workload={"kind": "concurrency", "concurrency": 1}, summary={},
    )  # fmt: skip
    assessment = Assessment.objects.create(
        cluster=node.cluster, window_start=now - timedelta(days=7), window_end=now,
        status="done", scenario='{"fuzz": true}',
    )  # fmt: skip
    rollout_ids = {}
    for action in ROLLOUT_STATES:
        target, _token = node_register(cluster_name="fuzz", hostname=f"fuzz-{action}")
        rollout = rollout_propose(
            user=proposer, nodes=[target.id], change={"title": action, "engine_args": {"seed": 1}}
        )
        rollout_ids[action] = rollout.id
        # A start needs its nodes serving (`_refresh_reports` keeps the report fresh).
        report = {"agent_started_at": time.time(), "seq": 1, "reported_at": time.time(),
                  "controller": "local", "state": "serving", "applied_generation": 0,
                  "healthy": True}  # fmt: skip
        node_observed_config_store(node_id=target.id, observed=Observed.from_json(report))
    _reset_rollouts(rollout_ids)
    client = Client()
    client.force_login(admin)
    return Seeds(
        cluster="fuzz",
        endpoint_id=endpoint.id,
        deployment_id=deployment.id,
        node_id=node.id,
        ids={
            "assessment_id": assessment.id,
            "job_id": job.id,
            "run_id": run.id,
            "rollout_id": rollout_ids["approve"],
        },
        rollout_ids=rollout_ids,
        session_id=client.cookies["sessionid"].value,
        agent_token=token,
    )


def _reset_rollouts(rollout_ids: dict[str, int]) -> None:
    """Put each action's rollout back in its `ROLLOUT_STATES` state, unapproved.

    Run before each case of a rollout operation: the first case that pauses (or aborts...)
    would leave the rest of that operation's cases a 409, and cases naming random ids move
    other actions' rollouts too.
    """
    from advisor.models import Rollout

    states: dict[tuple[str, bool], list[int]] = {}
    for action, state in ROLLOUT_STATES.items():
        states.setdefault(state, []).append(rollout_ids[action])
    for (status, paused), ids in states.items():
        Rollout.objects.filter(id__in=ids).update(
            status=status, paused=paused, approved_by=None, approved_at=None
        )


def _free_node(node_id: int) -> None:
    """End the rollouts a proposal left on the seeded node: else the next ones meet "busy"."""
    from advisor.models import Rollout, RolloutTarget

    Rollout.objects.filter(targets__node_id=node_id, status="pending").update(status="aborted")
    RolloutTarget.objects.filter(node_id=node_id, active=True).update(active=False)


def _refresh_reports(rollout_ids: dict[str, int]) -> None:
    """Date the seeded rollouts' nodes' reports now: a start refuses one older than 2 minutes."""
    from advisor.models import RolloutTarget
    from probes.models import Node

    targets = RolloutTarget.objects.filter(rollout_id__in=rollout_ids.values())
    for node in Node.objects.filter(id__in=targets.values("node_id")):  # six rows
        node.observed_config = {**node.observed_config, "received_at": time.time()}
        node.save(update_fields=["observed_config"])


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": schema}}}


def _schema(seeds: Seeds) -> dict[str, Any]:
    """The generated OpenAPI schema, plus what the views read but it leaves out."""
    from drf_spectacular.generators import SchemaGenerator

    from probes.agent.desired import STATES

    schema: dict[str, Any] = copy.deepcopy(SchemaGenerator().get_schema(request=None, public=True))
    paths = schema["paths"]
    anything: dict[str, Any] = {}  # any JSON value
    object_of = {"type": "object", "additionalProperties": anything}
    # Bodies the views parse by hand (request=None in their extend_schema).
    paths["/api/v1/agent/config/"]["post"]["requestBody"] = _json_body(
        {
            "type": "object",
            "required": [
                "agent_started_at",
                "seq",
                "reported_at",
                "controller",
                "state",
                "applied_generation",
                "healthy",
            ],
            "properties": {
                "agent_started_at": {"type": "number"},
                "seq": {"type": "integer"},
                "reported_at": {"type": "number"},
                "controller": {"enum": ["local", "kubernetes"]},
                "state": {"enum": list(STATES)},
                "applied_generation": {"type": "integer"},
                "healthy": {"type": "boolean"},
                "working_on": {"type": ["integer", "null"]},
                "config": {"type": ["object", "null"]},
                "last_failure": {"type": ["object", "null"]},
                "restarts": {"type": "integer"},
                "last_exit": {"type": ["object", "null"]},
                "metrics": {"type": ["object", "null"]},
                "probes": {"type": ["object", "null"]},
                "detail": {"type": "string"},
            },
        }
    )
    # A manual change to the seeded node (the recommendation form needs an assessed fleet).
    engine_args = {
        "type": "object",
        "minProperties": 1,
        "properties": {
            "max_num_seqs": {"type": "integer"},
            "gpu_memory_utilization": {"type": "number"},
            "enable_prefix_caching": {"type": "boolean"},
        },
        "additionalProperties": False,
    }
    paths["/api/v1/rollouts/"]["post"]["requestBody"] = _json_body(
        {
            "type": "object",
            "required": ["change", "nodes"],
            "properties": {
                "change": {
                    "type": "object",
                    "required": ["title", "engine_args"],
                    "properties": {
                        "title": {"type": "string", "minLength": 1, "maxLength": 200},
                        "engine_args": engine_args,
                        "model_path": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "nodes": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"anyOf": [{"enum": [seeds.node_id]}, {"type": "integer"}]},
                },
                "strategy": object_of,
                "gates": object_of,
                "reason": {"type": "string"},
            },
            "additionalProperties": False,
        }
    )
    note = _json_body(
        {
            "type": "object",
            "properties": {"note": {"type": "string"}},
            "additionalProperties": False,
        }
    )
    for path, operations in paths.items():
        if path.startswith("/api/v1/rollouts/{rollout_id}/") and "post" in operations:
            operations["post"].setdefault("requestBody", copy.deepcopy(note))
    # Query parameters the views read.
    _add_query(paths["/api/v1/assessments/"]["get"], "cluster", {"type": "string"})
    _add_query(paths["/api/v1/benchmarks/{job_id}/export/"]["get"], "as", {"enum": ["json", "csv"]})
    # Positive cases may name the seeded rows (else nearly all end in "not found").
    components = schema["components"]["schemas"]
    # The ingest parser refuses fields it does not know; the documentation leaves that out.
    for name, component in components.items():
        if name.startswith("Ingest") and "properties" in component:
            component.setdefault("additionalProperties", False)
    _either_seeded(components["AssessmentCreateDoc"]["properties"], "cluster", seeds.cluster)
    _either_seeded(components["JobCreateDoc"]["properties"], "endpoint", seeds.endpoint_id)
    return schema


def _add_query(operation: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    if not any(p["name"] == name and p["in"] == "query" for p in parameters):
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema})


def _either_seeded(properties: dict[str, Any], name: str, value: object) -> None:
    properties[name] = {"anyOf": [{"enum": [value]}, properties[name]]}


def _no_queue(*args: Any, **kwargs: Any) -> None:
    return None


@contextmanager
def _quiet_server() -> Iterator[list[str]]:
    """Record server tracebacks (and keep Django's request log off stderr); no tasks queued."""
    import logging
    from unittest import mock

    from celery.app.task import Task
    from django.core import signals
    from django.db import close_old_connections

    tracebacks: list[str] = []

    def record(**_: Any) -> None:
        tracebacks.append(traceback.format_exc())

    request_log = logging.getLogger("django.request")
    level = request_log.level
    request_log.setLevel(logging.CRITICAL)
    signals.got_request_exception.connect(record)
    # As Django's test client does: a request's end must not close the test's connection.
    signals.request_finished.disconnect(close_old_connections)
    try:
        with mock.patch.object(Task, "apply_async", _no_queue), warnings.catch_warnings():
            # WhiteNoise's note that `collectstatic` has not run: the API serves no static files.
            warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
            yield tracebacks
    finally:
        signals.request_finished.connect(close_old_connections)
        signals.got_request_exception.disconnect(record)
        request_log.setLevel(level)


def _with_nul(value: Any) -> Any:
    """`value` with a NUL character appended to every string in it (keys left alone)."""
    if isinstance(value, str):
        return value + "\x00"
    if isinstance(value, dict):
        return {key: _with_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_nul(item) for item in value]
    return value


def _nul_variant(case: Any) -> Any | None:
    """A copy of a case whose query and body strings end in NUL; None if it has no strings.

    PostgreSQL refuses NUL in text, and a view that passes one on answers 500. Schemathesis
    draws a NUL in roughly one string in a hundred, too rarely for a run of this size.
    """
    from schemathesis.core import NOT_SET

    query = _with_nul(case.query) if case.query else case.query
    body = case.body if case.body is NOT_SET else _with_nul(case.body)
    if query == case.query and (body is NOT_SET or body == case.body):
        return None
    return case.operation.Case(
        path_parameters=case.path_parameters, query=query, body=body, media_type=case.media_type
    )


def _credentials(operation: Any, seeds: Seeds) -> dict[str, Any]:
    """An agent's bearer token for the agent operations, else an admin's session and CSRF token."""
    if any(AGENT_SCHEME in scheme for scheme in operation.definition.raw.get("security", [])):
        return {"headers": {"Authorization": f"Bearer {seeds.agent_token}"}}
    return {
        "headers": {"X-CSRFToken": CSRF_TOKEN},
        "cookies": {"sessionid": seeds.session_id, "csrftoken": CSRF_TOKEN},
    }


def fuzz(*, cases_per_mode: int = CASES_PER_MODE, checks: list[Any] | None = None) -> FuzzResult:
    """Fuzz every operation against the database Django is set up with (seeds rows in it).

    `checks`: schemathesis checks run on each non-5xx answer to a generated case (default
    `default_checks()`); their failures are collected apart from the 5xx.
    """
    import schemathesis
    from django.core.handlers.wsgi import WSGIHandler
    from schemathesis.core.result import Err

    seeds = _seed()
    # Credentials come from `_credentials`: generated (or negated) ones would only be replaced.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_dict(_schema(seeds), config=config)
    result = FuzzResult()
    with _quiet_server() as tracebacks:
        schema.app = WSGIHandler()
        sender = _Sender(result, tracebacks, default_checks() if checks is None else checks)
        for found in schema.get_all_operations():
            if isinstance(found, Err):
                raise found.err()  # an operation the schema describes wrongly: fix the schema
            operation = found.ok()
            seeded = seeds.path_parameters(operation.path)
            sender.before_each = None
            if "{rollout_id}" in operation.path:
                _refresh_reports(seeds.rollout_ids)
                sender.before_each = functools.partial(_reset_rollouts, seeds.rollout_ids)
            elif operation.path == "/api/v1/rollouts/" and operation.method == "post":
                sender.before_each = functools.partial(_free_node, seeds.node_id)
            for mode in schemathesis.GenerationMode:
                sender.fuzz_operation(
                    operation, mode, credentials=_credentials(operation, seeds), seeded=seeded,
                    cases=cases_per_mode,
                )  # fmt: skip
    return result


@dataclass
class _Sender:
    result: FuzzResult
    tracebacks: list[str]  # filled by the got_request_exception receiver
    checks: list[Any]
    before_each: Callable[[], None] | None = None  # run before each request

    def fuzz_operation(
        self,
        operation: Any,
        mode: Any,
        *,
        credentials: dict[str, Any],
        seeded: dict[str, int],
        cases: int,
    ) -> None:
        """Up to `cases` derandomized cases of one operation in one generation mode."""
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st
        from hypothesis.errors import Unsatisfiable
        from schemathesis import GenerationMode

        label = f"{operation.method.upper()} {operation.path}"
        strategy = operation.as_strategy(generation_mode=mode)
        if seeded and mode is GenerationMode.POSITIVE:
            # Half the cases on the seeded rows: the rest mostly meet "not found".
            strategy = st.one_of(
                strategy, operation.as_strategy(generation_mode=mode, path_parameters=seeded)
            )

        @given(case=strategy)
        @settings(
            max_examples=cases, derandomize=True, database=None, deadline=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def fuzz_case(case: Any) -> None:
            if mode is GenerationMode.POSITIVE:
                # First: when the case changes a row's state, its copy meets the row unchanged.
                variant = _nul_variant(case)
                if variant is not None:
                    self.send(label, variant, credentials, validate=False)
            self.send(label, case, credentials, validate=True)

        with contextlib.suppress(Unsatisfiable):  # nothing to negate: no parameters, no body
            fuzz_case()

    def send(self, label: str, case: Any, credentials: dict[str, Any], *, validate: bool) -> None:
        """Send one case; record a 5xx, or (`validate`) the checks that fail on the answer."""
        from schemathesis.core.failures import FailureGroup

        if self.before_each is not None:
            self.before_each()
        self.tracebacks.clear()
        response = case.call(**credentials)
        self.result.cases[label] += 1
        self.result.statuses[label, response.status_code] += 1
        if response.status_code >= 500:
            curl = case.as_curl_command(headers=dict(response.request.headers))
            error = ServerError(label, response.status_code, curl, "".join(self.tracebacks))
            self.result.server_errors.append(error)
            return
        if not validate:
            return
        try:
            case.validate_response(response, checks=self.checks)
        except FailureGroup as group:
            curl = case.as_curl_command(headers=dict(response.request.headers))
            for failure in group.exceptions:
                detail = failure.message.strip().splitlines()[0] if failure.message else ""
                self.result.check_failures.append(
                    CheckFailure(label, f"{failure.code} {failure.title}", detail,
                                 response.status_code, curl)
                )  # fmt: skip


def default_checks() -> list[Any]:
    """The checks whose failures are worth reading (the others flag documentation gaps).

    Left out: `status_code_conformance` (the views document few of their 400s and 404s),
    `positive_data_acceptance` (a schema-valid body may name no cluster or endpoint: a 400),
    and the checks that send requests of their own (`ignored_auth`, `unsupported_method`).
    """
    from schemathesis.specs.openapi import checks

    return [
        checks.response_schema_conformance,
        checks.content_type_conformance,
        checks.negative_data_rejection,
    ]


def traceback_gist(text: str) -> str:
    """The innermost frame in our code (file:line and its source) and the exception line."""
    lines = text.strip().splitlines()
    ours = [
        i for i, line in enumerate(lines)
        if line.lstrip().startswith('File "') and "site-packages" not in line
    ]  # fmt: skip
    frame = ""
    if ours:
        where = lines[ours[-1]].strip()
        source = lines[ours[-1] + 1].strip() if ours[-1] + 1 < len(lines) else ""
        frame = f"{where}: {source} -> "
    return frame + (lines[-1].strip() if lines else "(no traceback recorded)")


def report(result: FuzzResult, *, out: Any = None) -> None:
    """Per-operation counts, each 5xx and each kind of check failure (with one example)."""
    out = out or sys.stderr
    errors = Counter(error.operation for error in result.server_errors)
    for label, count in sorted(result.cases.items(), key=lambda item: item[0].split()[::-1]):
        statuses = " ".join(
            f"{status}:{n}" for (op, status), n in sorted(result.statuses.items()) if op == label
        )
        print(f"# {count:5d} cases {errors[label]:4d} 5xx  {label}  ({statuses})", file=out)
    for error in result.server_errors:
        print(f"# 5xx: {error.operation} -> {error.status}: {error.curl}", file=out)
        print(f"#      {traceback_gist(error.traceback)}", file=out)
    kinds = Counter((f.operation, f.title) for f in result.check_failures)
    shown: set[tuple[str, str]] = set()
    for failure in result.check_failures:
        key = (failure.operation, failure.title)
        if key in shown:
            continue
        shown.add(key)
        print(
            f"# check failed {kinds[key]}x: {failure.operation}: {failure.title}: "
            f"{failure.detail} (e.g. status {failure.status}): {failure.curl}",
            file=out,
        )
    out.flush()


def run() -> Iterator[Figure]:
    django_test_database(bench="bench_fuzz", suffix="bench_fuzz", keepdb=False)
    from django.db import connection

    started = time.perf_counter()
    result = fuzz()
    report(result)
    took_s = time.perf_counter() - started
    print(f"# {result.total} cases, {len(result.server_errors)} 5xx in {took_s:.0f} s", flush=True)
    yield Figure("fuzz_cases", result.total, "cases", ">= 1000")
    yield Figure("fuzz_5xx", len(result.server_errors), "responses", "= 0")
    connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)
