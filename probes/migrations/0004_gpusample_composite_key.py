# GpuSample's primary key becomes (gpu, ts): one index instead of three on the table that
# takes every GPU sample. Django cannot add a composite primary key to an existing table by
# itself, so the database side is written here per vendor; the state side is what
# makemigrations generated.

from django.db import migrations, models


def add_primary_key(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE "probes_gpusample" ADD PRIMARY KEY ("gpu_id", "ts")')
        # BRIN: tiny and nearly free to maintain on append-mostly time series; serves
        # fleet-wide window reads and retention deletes by ts.
        schema_editor.execute(
            'CREATE INDEX "gpusample_ts_brin" ON "probes_gpusample" USING brin ("ts")'
        )
    else:
        # SQLite cannot add a primary key to a table: a unique index gives the same
        # guarantee (and INSERT OR IGNORE semantics) for the demo database.
        schema_editor.execute(
            'CREATE UNIQUE INDEX "gpusample_gpu_ts" ON "probes_gpusample" ("gpu_id", "ts")'
        )
        schema_editor.execute('CREATE INDEX "gpusample_ts" ON "probes_gpusample" ("ts")')


class Migration(migrations.Migration):

    dependencies = [
        ('probes', '0003_gpusample_fast_ingest'),
    ]

    state_operations = [
        migrations.RemoveConstraint(
            model_name='gpusample',
            name='gpusample_unique_gpu_ts',
        ),
        migrations.RemoveIndex(
            model_name='gpusample',
            name='gpusample_ts',
        ),
        migrations.RemoveField(
            model_name='gpusample',
            name='id',
        ),
        migrations.AddField(
            model_name='gpusample',
            name='pk',
            field=models.CompositePrimaryKey('gpu', 'ts', blank=True, editable=False, primary_key=True, serialize=False),
        ),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=state_operations,
            database_operations=[
                migrations.RemoveConstraint(model_name='gpusample', name='gpusample_unique_gpu_ts'),
                migrations.RemoveIndex(model_name='gpusample', name='gpusample_ts'),
                migrations.RemoveField(model_name='gpusample', name='id'),
                migrations.RunPython(add_primary_key, migrations.RunPython.noop),
            ],
        ),
    ]
