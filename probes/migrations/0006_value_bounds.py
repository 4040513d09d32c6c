# Prices, their dates and replica counts get the bounds of `advisor.engine.bounds`: field
# validators (the admin names the field) and check constraints with the same numbers (writes
# that skip validation are refused too). A database already holding a row out of bounds stops
# here with the rows listed and nothing changed (`probes.bounds.bad_rows_refuse` says why).

import datetime

from django.db import migrations, models

import probes.bounds

REPLICAS = models.CheckConstraint(
    condition=models.Q(("replicas__gte", 0), ("replicas__lte", 512)),
    name="deployment_replicas_in_bounds",
    violation_error_message="replicas: must be a whole number >= 0 and <= 512",
)
PRICE = models.CheckConstraint(
    condition=models.Q(("usd_per_gpu_hour__gte", 0.0), ("usd_per_gpu_hour__lte", 1000.0)),
    name="pricesheet_usd_per_gpu_hour_in_bounds",
    violation_error_message="usd_per_gpu_hour: must be >= 0 and <= 1000 USD per GPU-hour",
)
AS_OF = models.CheckConstraint(
    condition=models.Q(
        ("as_of__gte", datetime.date(2000, 1, 1)), ("as_of__lte", datetime.date(2100, 12, 31))
    ),
    name="pricesheet_as_of_in_bounds",
    violation_error_message="as_of: must be between 2000-01-01 and 2100-12-31",
)


class Migration(migrations.Migration):
    dependencies = [
        ("probes", "0005_ingest_hardening"),
    ]

    operations = [
        probes.bounds.bad_rows_refuse("probes", "ModelDeployment", {"replicas": REPLICAS}),
        probes.bounds.bad_rows_refuse(
            "probes", "PriceSheet", {"usd_per_gpu_hour": PRICE, "as_of": AS_OF}
        ),
        migrations.AlterField(
            model_name="modeldeployment",
            name="replicas",
            field=models.PositiveIntegerField(
                default=1, validators=[probes.bounds.InBound("replicas")]
            ),
        ),
        migrations.AlterField(
            model_name="pricesheet",
            name="as_of",
            field=models.DateField(
                help_text="Must be between 2000-01-01 and 2100-12-31",
                validators=[probes.bounds.InBound("as_of")],
            ),
        ),
        migrations.AlterField(
            model_name="pricesheet",
            name="gpu_kind",
            field=models.CharField(
                help_text="Catalog name, e.g. H100-SXM, or the NVML name of a GPU the catalog "
                "lacks",
                max_length=64,
                unique=True,
            ),
        ),
        migrations.AlterField(
            model_name="pricesheet",
            name="usd_per_gpu_hour",
            field=models.DecimalField(
                decimal_places=4,
                help_text="Must be >= 0 and <= 1000 USD per GPU-hour",
                max_digits=10,
                validators=[probes.bounds.InBound("usd_per_gpu_hour")],
            ),
        ),
        migrations.AddConstraint(model_name="modeldeployment", constraint=REPLICAS),
        migrations.AddConstraint(model_name="pricesheet", constraint=PRICE),
        migrations.AddConstraint(model_name="pricesheet", constraint=AS_OF),
    ]
