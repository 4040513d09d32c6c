"""The demo's SQLite database takes agent batches and traces too (CI's suite runs on PostgreSQL,
so this runs the SQLite path in a subprocess of its own)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import gzip, json, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
from probes.models import GpuSample, RequestRecord, GpuRollup
from probes.services import node_register, trace_import
from probes.services.rollups import rollups_pending_compute
from probes.models import Cluster, ModelDeployment

node, token = node_register(cluster_name="demo", hostname="gpu-1")
now = time.time() - 120
body = {"batch_id": "b1", "gpus": [{"uuid": "GPU-0", "index": 0, "name": "H100",
        "memory_bytes": 80}],
        "gpu_samples": [{"gpu_uuid": "GPU-0", "ts": now + i, "util_pct": 10.0 * i,
                         "mem_used_bytes": 5} for i in range(5)],
        "requests": [{"served_name": "llama", "arrival_ts": now, "prompt_tokens": 3,
                      "output_tokens": 4}]}
client = Client(HTTP_HOST="localhost")
def post(payload):
    return client.post(
        "/api/v1/ingest/", data=gzip.compress(json.dumps(payload).encode()),
        content_type="application/json", HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION="Bearer " + token,
    )
first, again = post(body), post(body)
body["batch_id"] = "b2"
body["gpu_samples"].append({"gpu_uuid": "GPU-0", "ts": now + 10, "util_pct": 1.0,
                            "mem_used_bytes": 5})
overlap = post(body)
deployment = ModelDeployment.objects.get(served_name="llama")
report = trace_import(deployment=deployment, file=__import__("pathlib").Path(
    "probes/data/traces/AzureLLMInferenceTrace_code.csv"), format="azure")
rollups_pending_compute()
print(json.dumps({
    "statuses": [first.status_code, again.status_code, overlap.status_code],
    "overlap": overlap.json(),
    "samples": GpuSample.objects.count(),
    "requests": RequestRecord.objects.count(),
    "imported": report.rows_imported,
    "rollups": GpuRollup.objects.count(),
}))
"""


def test_it_ingests_imports_and_rolls_up_on_sqlite(tmp_path: Path) -> None:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "GCA_VAR_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [201, 200, 201]
    assert result["overlap"]["stored"]["gpu_samples"] == 1
    assert result["overlap"]["duplicate_rows"] == 5
    assert result["samples"] == 6
    assert result["requests"] == 2 + 8819
    assert result["imported"] == 8819
    assert result["rollups"] >= 2
