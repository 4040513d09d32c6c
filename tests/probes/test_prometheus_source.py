"""The Prometheus source against a real Prometheus (Debian package) scraping the vLLM node.

Prometheus also scrapes two stand-ins for what this machine lacks: a dcgm-exporter (no GPU
here) and an old vLLM that still exports the pre-V1 metric names.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import CommandError, call_command

from probes.agent.vllm_metrics import Histogram, fetch_snapshot
from probes.agent.vllm_process import VllmProcess
from probes.models import Cluster, EngineRollup, EngineSample, Gpu, GpuSample, Node
from probes.services.prometheus import prometheus_import
from tests.probes.agent.stub_http import serving, text
from tests.probes.servers import LOG_DIR
from tests.support.components import free_port, missing
from tests.support.vllm_node import SERVED_NAME

pytestmark = [pytest.mark.integration]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
LABELS = 'modelName="NVIDIA H100 80GB HBM3",Hostname="dgx-7",pod="vllm-0",namespace="serving"'
DCGM = f"""\
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-aaa",{LABELS}}} 64
DCGM_FI_DEV_GPU_UTIL{{gpu="1",UUID="GPU-bbb",{LABELS}}} 12
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{{gpu="0",UUID="GPU-aaa",{LABELS}}} 60000
DCGM_FI_DEV_FB_USED{{gpu="1",UUID="GPU-bbb",{LABELS}}} 1000
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{{gpu="0",UUID="GPU-aaa",{LABELS}}} 21559
DCGM_FI_DEV_FB_FREE{{gpu="1",UUID="GPU-bbb",{LABELS}}} 80559
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{{gpu="0",UUID="GPU-aaa",{LABELS}}} 500.5
# TYPE DCGM_FI_PROF_PIPE_TENSOR_ACTIVE gauge
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{gpu="0",UUID="GPU-aaa",{LABELS}}} 0.35
"""
OLD_VLLM = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="old-model"} 5
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="old-model"} 2
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="old-model"} 0.75
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="old-model"} 1000
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="0.01",model_name="old-model"} 30
vllm:time_per_output_token_seconds_bucket{le="0.1",model_name="old-model"} 90
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="old-model"} 100
vllm:time_per_output_token_seconds_sum{model_name="old-model"} 3.5
vllm:time_per_output_token_seconds_count{model_name="old-model"} 100
"""


@pytest.fixture
def prometheus(vllm_node: VllmProcess, tmp_path: Path) -> Iterator[dict[str, str]]:
    if not Path(PROMETHEUS).exists():
        missing("Prometheus", f"{PROMETHEUS} not found: apt-get install prometheus")
    with (
        serving({("GET", "/metrics"): text(DCGM)}) as dcgm,
        serving({("GET", "/metrics"): text(OLD_VLLM)}) as old_vllm,
    ):
        port = free_port()
        vllm_target = vllm_node.launch.base_url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - {{job_name: vllm, static_configs: [{{targets: ['{vllm_target}']}}]}}\n"
            f"  - {{job_name: old-vllm, static_configs: "
            f"[{{targets: ['{old_vllm.removeprefix('http://')}']}}]}}\n"
            f"  - {{job_name: dcgm, static_configs: [{{targets: ['{dcgm.removeprefix('http://')}']}}]}}\n"
        )
        log = (LOG_DIR / f"prometheus-{port}.log").open("wb")
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process)
            yield {"url": url, "vllm_instance": vllm_target}
        finally:
            process.terminate()
            process.wait(timeout=20)
            log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    """Until Prometheus answers and has scraped all three targets (discovery takes ~5 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}")
        try:
            targets = httpx.get(url + "/api/v1/targets", timeout=1).json()["data"]
            health = [t["health"] for t in targets["activeTargets"]]
            if health == ["up"] * 3:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError("prometheus has not scraped its three targets in 60 s")


def test_it_imports_gpu_and_vllm_metrics_from_prometheus(
    transactional_db: Any, vllm_node: VllmProcess, prometheus: dict[str, str]
) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    with httpx.Client(timeout=60) as client:
        for i in range(6):
            client.post(
                vllm_node.launch.base_url + "/v1/completions",
                json={"model": SERVED_NAME, "prompt": f"hello {i}", "max_tokens": 16,
                      "ignore_eos": True},
            ).raise_for_status()  # fmt: skip
    time.sleep(4)  # a few scrapes after the last request
    expected = fetch_snapshot(vllm_node.launch.base_url, model_name=SERVED_NAME)
    end = datetime.now(UTC).replace(microsecond=0)
    cluster = Cluster.objects.create(name="k8s")

    report = prometheus_import(url=prometheus["url"], cluster=cluster,
                               start=start - timedelta(seconds=2), end=end, step_s=1)  # fmt: skip
    counts = report.counts()
    assert counts["nodes"] == 1
    assert counts["gpus"] == 2
    node = Node.objects.get(cluster=cluster)
    assert node.hostname == "dgx-7"
    assert node.labels["gpu_pods"] == {"GPU-aaa": "serving/vllm-0", "GPU-bbb": "serving/vllm-0"}
    gpu = Gpu.objects.get(uuid="GPU-aaa")
    assert (gpu.index, gpu.model_name) == (0, "NVIDIA H100 80GB HBM3")
    assert gpu.memory_bytes == (60000 + 21559) * 2**20
    samples = GpuSample.objects.filter(gpu=gpu)
    assert samples.count() >= 4
    assert set(samples.values_list("util_pct", "mem_used_bytes", "power_w", "tensor_active")) == {
        (64.0, 60000 * 2**20, 500.5, 0.35)
    }

    engine = EngineSample.objects.filter(deployment__served_name=SERVED_NAME)
    assert engine.count() >= 4
    assert set(engine.values_list("instance", flat=True)) == {prometheus["vllm_instance"]}
    last = engine.order_by("ts").last()
    assert last is not None
    assert last.requests_finished_total == expected.counters["request_success"]
    assert last.generation_tokens_total == expected.counters["generation_tokens"]
    first = engine.order_by("ts").first()
    assert first is not None
    assert (last.requests_finished_total or 0) - (first.requests_finished_total or 0) == 6
    with_hists = engine.exclude(histograms=None).order_by("ts").last()
    assert with_hists is not None
    assert isinstance(with_hists.histograms, dict)
    ttft = Histogram.from_json(with_hists.histograms["time_to_first_token_seconds"])
    assert ttft.count == expected.histograms["time_to_first_token_seconds"].count
    assert EngineRollup.objects.filter(deployment__served_name=SERVED_NAME).exists()

    # The old vLLM's names map to the current fields.
    old = EngineSample.objects.filter(deployment__served_name="old-model").last()
    assert old is not None
    assert (old.num_requests_running, old.kv_cache_usage) == (5.0, 0.75)
    assert old.generation_tokens_total == 1000.0
    assert old.histograms is not None
    assert old.histograms["inter_token_latency_seconds"]["count"] == 100.0

    # Pulling the same window again stores nothing twice.
    before = (GpuSample.objects.count(), EngineSample.objects.count())
    prometheus_import(url=prometheus["url"], cluster=cluster,
                      start=start - timedelta(seconds=2), end=end, step_s=1)  # fmt: skip
    assert (GpuSample.objects.count(), EngineSample.objects.count()) == before


def test_the_command_says_when_prometheus_is_unreachable(db: Any) -> None:
    with pytest.raises(CommandError, match=r"Prometheus at http://127\.0\.0\.1:"):
        call_command(
            "import_prometheus", "--url", f"http://127.0.0.1:{free_port()}", "--cluster", "x",
            "--start", "2026-01-01T00:00:00", "--end", "2026-01-01T00:10:00",
        )  # fmt: skip
    with pytest.raises(CommandError, match=r"more than 11000 points"):
        call_command(
            "import_prometheus", "--url", "http://127.0.0.1:1", "--cluster", "x",
            "--start", "2026-01-01", "--end", "2026-02-01", "--step", "1",
        )  # fmt: skip
