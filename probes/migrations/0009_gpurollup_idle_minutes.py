# Idle time counted in minutes at both resolutions (issue 16, item 7): an hour rollup keeps
# how many of its minutes were idle, so a 7-day window read from hour rollups counts the same
# idle time as a 24-hour window read from minute rollups. Stored rows are filled in from
# what is kept: a minute row from its own peak; an hour row from its minute rows where they
# are still kept (90 days), else from its own peak (a wholly idle hour, as counted before).

from datetime import timedelta

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

# probes.models.IDLE_UTIL_PCT when this migration was written (a migration keeps its numbers).
IDLE_UTIL_PCT = 5.0


def idle_minutes_fill(apps, schema_editor):
    GpuRollup = apps.get_model("probes", "GpuRollup")
    minutes = GpuRollup.objects.filter(resolution="1m")
    minutes.filter(util_max_pct__lt=IDLE_UTIL_PCT).update(idle_minutes=1)
    idle_in_hour = (
        minutes.filter(
            gpu_id=OuterRef("gpu_id"),
            bucket_start__gte=OuterRef("bucket_start"),
            bucket_start__lt=OuterRef("bucket_start") + timedelta(hours=1),
            util_max_pct__lt=IDLE_UTIL_PCT,
        )
        .values("gpu_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    hours = GpuRollup.objects.filter(resolution="1h")
    # No idle minute row: 60 where the whole hour stayed below the threshold, else 0.
    hours.update(
        idle_minutes=Coalesce(
            Subquery(idle_in_hour, output_field=models.PositiveSmallIntegerField()),
            models.Case(
                models.When(util_max_pct__lt=IDLE_UTIL_PCT, then=Value(60)),
                default=Value(0),
            ),
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("probes", "0008_traceimport_shift"),
    ]

    operations = [
        migrations.AddField(
            model_name="gpurollup",
            name="idle_minutes",
            field=models.PositiveSmallIntegerField(db_default=0),
        ),
        migrations.RunPython(idle_minutes_fill, migrations.RunPython.noop, elidable=True),
    ]
