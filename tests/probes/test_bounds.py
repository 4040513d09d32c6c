"""Stored values keep the engine's bounds: the admin names the field, the database refuses a
write that skips validation, a migration lists the rows already out of bounds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.test import Client

from advisor.models import AssessmentSchedule, BenchmarkEndpoint, DeploymentSlo
from advisor.services.assessments import AssessmentInputError, schedule_save
from probes.bounds import bad_rows_refuse, stored_refusal
from probes.models import Cluster, Gpu, ModelDeployment, Node, PriceSheet
from tests.support.bounds import bound_checks, run_python_step, store_out_of_bounds

pytestmark = pytest.mark.django_db

PRICE_FORM = {"gpu_kind": "H100-SXM", "usd_per_gpu_hour": "3.5", "source": "contract",
              "as_of": "2026-01-01"}  # fmt: skip


@pytest.fixture
def admin_client(client: Client) -> Client:
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    return client


@pytest.fixture
def deployment() -> ModelDeployment:
    cluster = Cluster.objects.create(name="prod")
    node = Node.objects.create(cluster=cluster, hostname="gpu-a")
    Gpu.objects.create(node=node, uuid="GPU-x", index=0, model_name="NVIDIA RTX 9999 Pro",
                       memory_bytes=48 * 2**30)  # fmt: skip
    return ModelDeployment.objects.create(cluster=cluster, model_id="m", served_name="chat")


def _errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was saved"
    return dict(response.context["adminform"].form.errors)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("usd_per_gpu_hour", "-2", "must be >= 0 and <= 1000 USD per GPU-hour, got -2"),
        ("usd_per_gpu_hour", "1000.0001",
         "must be >= 0 and <= 1000 USD per GPU-hour, got 1000.0001"),
        ("as_of", "1900-01-01", "must be between 2000-01-01 and 2100-12-31, got 1900-01-01"),
        ("as_of", "2101-01-01", "must be between 2000-01-01 and 2100-12-31, got 2101-01-01"),
        ("gpu_kind", "H100-SMX", "unknown GPU kind 'H100-SMX': not in the catalog ("),
    ],
)  # fmt: skip
def test_it_refuses_a_bad_price_sheet_value_in_the_admin_naming_the_field(
    admin_client: Client, deployment: ModelDeployment, field: str, value: str, error: str
) -> None:
    response = admin_client.post("/admin/probes/pricesheet/add/", {**PRICE_FORM, field: value})
    errors = _errors(response)
    assert list(errors) == [field]
    assert errors[field][0].startswith(error)
    assert PriceSheet.objects.count() == 0


def test_it_saves_a_price_at_the_bounds_and_an_alias_as_the_catalog_name(
    admin_client: Client, deployment: ModelDeployment
) -> None:
    for kind, price, as_of in (("h100-80gb-hbm3", "1000", "2000-01-01"),
                               ("NVIDIA RTX 9999 Pro", "0", "2100-12-31")):  # fmt: skip
        form = {**PRICE_FORM, "gpu_kind": kind, "usd_per_gpu_hour": price, "as_of": as_of}
        response = admin_client.post("/admin/probes/pricesheet/add/", form)
        assert response.status_code == 302, _errors(response)
    saved = PriceSheet.objects.values_list("gpu_kind", "usd_per_gpu_hour", "as_of")
    assert sorted(saved) == [
        ("H100-SXM", Decimal("1000.0000"), date(2000, 1, 1)),
        # an NVML name the catalog lacks is a kind when a GPU in the inventory reports it
        ("NVIDIA RTX 9999 Pro", Decimal("0.0000"), date(2100, 12, 31)),
    ]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("ttft_p95_s", "0", "must be > 0 and <= 3600 s, got 0"),
        ("ttft_p95_s", "-1", "must be > 0 and <= 3600 s, got -1"),
        ("ttft_p95_s", "1e308", "must be > 0 and <= 3600 s, got 1e+308"),
        ("tpot_p95_s", "60.5", "must be > 0 and <= 60 s, got 60.5"),
        ("max_quality_loss_points", "-0.5", "must be >= 0 and <= 100 points, got -0.5"),
        ("min_replicas", "513", "must be a whole number >= 0 and <= 512, got 513"),
    ],
)
def test_it_refuses_a_bad_slo_in_the_admin_naming_the_field(
    admin_client: Client, deployment: ModelDeployment, field: str, value: str, error: str
) -> None:
    form = {"deployment": deployment.pk, field: value}
    response = admin_client.post("/admin/advisor/deploymentslo/add/", form)
    assert _errors(response) == {field: [error]}
    assert DeploymentSlo.objects.count() == 0


@pytest.mark.parametrize(("value", "error"), [
    ("0", "must be a whole number >= 1 and <= 90 days, got 0"),
    ("91", "must be a whole number >= 1 and <= 90 days, got 91"),
])  # fmt: skip
def test_it_refuses_a_schedule_window_the_service_refuses(
    admin_client: Client, deployment: ModelDeployment, value: str, error: str
) -> None:
    form = {"cluster": deployment.cluster.pk, "window_days": value}
    response = admin_client.post("/admin/advisor/assessmentschedule/add/", form)
    assert _errors(response) == {"window_days": [error]}
    with pytest.raises(AssessmentInputError) as caught:
        schedule_save(cluster=deployment.cluster, window_days=int(value))
    assert (caught.value.field, caught.value.message) == ("window_days", error)


def test_an_empty_slo_is_still_the_default(
    admin_client: Client, deployment: ModelDeployment
) -> None:
    form = {"deployment": deployment.pk, "ttft_p95_s": "3600", "tpot_p95_s": ""}
    response = admin_client.post("/admin/advisor/deploymentslo/add/", form)
    assert response.status_code == 302
    slo = DeploymentSlo.objects.get()
    assert (slo.ttft_p95_s, slo.tpot_p95_s, slo.max_quality_loss_points) == (3600.0, None, None)


def test_the_redundancy_rule_is_edited_with_the_slos(
    admin_client: Client, deployment: ModelDeployment
) -> None:
    form = {"deployment": deployment.pk, "min_replicas": "3"}
    response = admin_client.post("/admin/advisor/deploymentslo/add/", form)
    assert response.status_code == 302
    slo = DeploymentSlo.objects.get()
    assert (slo.min_replicas, slo.ttft_p95_s) == (3, None)
    page = admin_client.get("/admin/advisor/deploymentslo/").content.decode()
    assert 'class="field-min_replicas">3<' in page


def test_it_refuses_replicas_and_an_endpoint_gpu_kind_beyond_the_bounds(
    deployment: ModelDeployment,
) -> None:
    deployment.replicas = 513
    with pytest.raises(ValidationError) as caught:
        deployment.full_clean()
    assert caught.value.message_dict == {
        "replicas": ["must be a whole number >= 0 and <= 512, got 513"]
    }
    hardware = BenchmarkEndpoint._meta.get_field("hardware")
    with pytest.raises(ValidationError) as caught:
        hardware.run_validators("TPU-v9")
    assert caught.value.messages[0].startswith("unknown GPU kind 'TPU-v9'; the catalog knows ")
    hardware.run_validators("h100")  # an alias is a catalog kind


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (PriceSheet, "usd_per_gpu_hour", Decimal("-2")),
        (PriceSheet, "usd_per_gpu_hour", Decimal("1000.5")),
        (PriceSheet, "as_of", date(1900, 1, 1)),
        (DeploymentSlo, "ttft_p95_s", 0.0),
        (DeploymentSlo, "ttft_p95_s", 1e308),
        (DeploymentSlo, "tpot_p95_s", -0.1),
        (DeploymentSlo, "max_quality_loss_points", 101.0),
        (DeploymentSlo, "min_replicas", 513),
        (ModelDeployment, "replicas", 513),
        (AssessmentSchedule, "window_days", 0),
    ],
)
def test_the_database_refuses_a_bad_value_written_past_validation(
    deployment: ModelDeployment, model: type[Model], field: str, value: object
) -> None:
    rows: dict[type[Model], Callable[[], Model]] = {
        PriceSheet: lambda: PriceSheet.objects.create(
            gpu_kind="H100-SXM",
            usd_per_gpu_hour=Decimal("3.5000"),
            source="contract",
            as_of=date(2026, 1, 1),
        ),
        DeploymentSlo: lambda: DeploymentSlo.objects.create(deployment=deployment),
        ModelDeployment: lambda: deployment,
        AssessmentSchedule: lambda: AssessmentSchedule.objects.create(cluster=deployment.cluster),
    }
    row = rows[model]()
    before = getattr(row, field)
    with pytest.raises(IntegrityError), transaction.atomic():
        model._default_manager.filter(pk=row.pk).update(**{field: value})
    row.refresh_from_db()
    assert getattr(row, field) == before


def test_a_migration_lists_the_rows_already_out_of_bounds_and_changes_nothing(
    deployment: ModelDeployment,
) -> None:
    good = PriceSheet.objects.create(gpu_kind="A100-80GB", usd_per_gpu_hour="1.5",
                                     source="contract", as_of=date(2026, 1, 1))  # fmt: skip
    bad = PriceSheet.objects.create(gpu_kind="H100-SXM", usd_per_gpu_hour="3.5",
                                    source="contract", as_of=date(2026, 1, 1))  # fmt: skip
    store_out_of_bounds(bad, usd_per_gpu_hour=Decimal("-2"), as_of=date(1900, 1, 1))
    step = bad_rows_refuse("probes", "PriceSheet", bound_checks(PriceSheet))
    with pytest.raises(RuntimeError) as caught:
        run_python_step(step)
    assert str(caught.value) == (
        "rows out of bounds; fix them and migrate again (nothing was changed):\n"
        f"  probes.PriceSheet #{bad.pk} usd_per_gpu_hour=-2.0000: "
        "pricesheet_usd_per_gpu_hour_in_bounds "
        "(usd_per_gpu_hour: must be >= 0 and <= 1000 USD per GPU-hour)\n"
        f"  probes.PriceSheet #{bad.pk} as_of=1900-01-01: pricesheet_as_of_in_bounds "
        "(as_of: must be between 2000-01-01 and 2100-12-31)"
    )
    good.refresh_from_db()
    assert stored_refusal(good, "usd_per_gpu_hour", "skipped") is None
