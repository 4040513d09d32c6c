# SLOs and a scheduled assessment's window get the bounds of `advisor.engine.bounds`
# (validators and check constraints with the same numbers; an empty SLO still means the
# default) and a benchmark endpoint's hardware must be a catalog GPU kind. A database already
# holding a row out of bounds stops here with the rows listed and nothing changed
# (`probes.bounds.bad_rows_refuse` says why).

from django.db import migrations, models

import probes.bounds
import probes.gpu_kinds


def _slo_check(field: str, low: models.Q, high: float, message: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=models.Q((f"{field}__isnull", True)) | (low & models.Q((f"{field}__lte", high))),
        name=f"deploymentslo_{field}_in_bounds",
        violation_error_message=f"{field}: must be {message}",
    )


TTFT = _slo_check("ttft_p95_s", models.Q(ttft_p95_s__gt=0.0), 3600.0, "> 0 and <= 3600 s")
TPOT = _slo_check("tpot_p95_s", models.Q(tpot_p95_s__gt=0.0), 60.0, "> 0 and <= 60 s")
QUALITY = _slo_check(
    "max_quality_loss_points",
    models.Q(max_quality_loss_points__gte=0.0),
    100.0,
    ">= 0 and <= 100 points",
)

WINDOW_DAYS = models.CheckConstraint(
    condition=models.Q(("window_days__gte", 1), ("window_days__lte", 90)),
    name="assessmentschedule_window_days_in_bounds",
    violation_error_message="window_days: must be a whole number >= 1 and <= 90 days",
)


class Migration(migrations.Migration):
    dependencies = [
        ("advisor", "0004_job_heartbeats"),
    ]

    operations = [
        probes.bounds.bad_rows_refuse(
            "advisor",
            "DeploymentSlo",
            {"ttft_p95_s": TTFT, "tpot_p95_s": TPOT, "max_quality_loss_points": QUALITY},
        ),
        probes.bounds.bad_rows_refuse(
            "advisor", "AssessmentSchedule", {"window_days": WINDOW_DAYS}
        ),
        migrations.AlterField(
            model_name="assessmentschedule",
            name="window_days",
            field=models.PositiveSmallIntegerField(
                default=7,
                help_text="a whole number >= 1 and <= 90 days",
                validators=[probes.bounds.InBound("window_days")],
            ),
        ),
        migrations.AlterField(
            model_name="benchmarkendpoint",
            name="hardware",
            field=models.CharField(
                blank=True,
                help_text="catalog GPU name",
                max_length=64,
                validators=[probes.gpu_kinds.validate_catalog_gpu_kind],
            ),
        ),
        migrations.AlterField(
            model_name="deploymentslo",
            name="max_quality_loss_points",
            field=models.FloatField(
                blank=True,
                help_text="largest accuracy loss (points) a quantization may cost; >= 0 and "
                "<= 100 points",
                null=True,
                validators=[probes.bounds.InBound("max_quality_loss_points")],
            ),
        ),
        migrations.AlterField(
            model_name="deploymentslo",
            name="tpot_p95_s",
            field=models.FloatField(
                blank=True,
                help_text="time per output token, p95; > 0 and <= 60 s",
                null=True,
                validators=[probes.bounds.InBound("tpot_p95_s")],
            ),
        ),
        migrations.AlterField(
            model_name="deploymentslo",
            name="ttft_p95_s",
            field=models.FloatField(
                blank=True,
                help_text="time to first token, p95; > 0 and <= 3600 s",
                null=True,
                validators=[probes.bounds.InBound("ttft_p95_s")],
            ),
        ),
        migrations.AddConstraint(model_name="deploymentslo", constraint=TTFT),
        migrations.AddConstraint(model_name="deploymentslo", constraint=TPOT),
        migrations.AddConstraint(model_name="deploymentslo", constraint=QUALITY),
        migrations.AddConstraint(model_name="assessmentschedule", constraint=WINDOW_DAYS),
    ]
