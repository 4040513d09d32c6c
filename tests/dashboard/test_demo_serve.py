"""`make demo` serves with a Celery worker and beat when Redis answers (issue 16 item 9),
and pages say so when tasks run inline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import Client

from advisor.models import Assessment
from dashboard.demo_serve import broker_answers, demo_processes
from tests.dashboard.assessed import assessment_completed
from tests.dashboard.conftest import END
from tests.support.components import missing, port_open

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def test_it_runs_a_worker_with_beat_on_every_queue_when_a_broker_answers() -> None:
    worker, web = demo_processes(broker_url="redis://h:1/5", bind="127.0.0.1:8000", var_dir="v")
    assert worker.name == "worker+beat"
    assert worker.argv == (
        PY, "-m", "celery", "-A", "config", "worker", "-B", "-Q", "default,sim,bench,rollout",
        "--concurrency", "1", "--loglevel", "INFO", "--logfile", "v/demo-worker.log",
        "--schedule", "v/demo-beat-schedule",
    )  # fmt: skip
    assert web.argv == (
        PY, "-m", "gunicorn", "config.wsgi", "--bind", "127.0.0.1:8000", "--workers", "2",
        "--timeout", "300",
    )  # fmt: skip


def test_it_serves_the_web_alone_without_a_broker() -> None:
    (web,) = demo_processes(broker_url=None, bind="127.0.0.1:8000", var_dir="v")
    assert web.name == "web"


def test_it_finds_no_broker_where_nothing_listens() -> None:
    assert broker_answers("redis://127.0.0.1:9/0", timeout_s=0.5) is False


@pytest.mark.django_db
def test_every_page_says_when_tasks_run_inline(client: Client, settings, carol) -> None:
    client.force_login(carol)
    settings.CELERY_TASK_ALWAYS_EAGER = True
    html = client.get("/").content.decode()
    assert 'data-testid="tasks-inline"' in html
    assert "weekly schedules do not fire" in html
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert 'data-testid="tasks-inline"' not in client.get("/").content.decode()


@pytest.mark.integration
def test_demo_serve_starts_gunicorn_and_a_worker_with_beat(tmp_path: Path) -> None:
    if not port_open("127.0.0.1", 6379):
        missing("Redis", "nothing listens on 127.0.0.1:6379")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "GCA_VAR_DIR": str(tmp_path),
        "DEBUG": "False",
        "SECURE_SSL": "False",
        "SECRET_KEY": "demo-serve-test-" + "x" * 40,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("CELERY_BROKER_URL", None)
    subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    port = 18000 + os.getpid() % 1000
    serve = subprocess.Popen(
        [PY, "manage.py", "demo_serve", "--bind", f"127.0.0.1:{port}",
         "--broker", "redis://127.0.0.1:6379/8"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    log = tmp_path / "demo-worker.log"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            if port_open("127.0.0.1", port) and " ready." in text and "beat: Starting" in text:
                break
            time.sleep(1)
        text = log.read_text() if log.exists() else ""
        assert port_open("127.0.0.1", port), "gunicorn did not listen"
        assert " ready." in text, text[-2000:]
        assert "beat: Starting" in text, text[-2000:]
    finally:
        serve.send_signal(signal.SIGTERM)
        output, _ = serve.communicate(timeout=60)
    assert "background work: a Celery worker with beat on redis://127.0.0.1:6379/8" in output
    assert serve.returncode == 0


@pytest.mark.django_db
def test_the_assessment_list_says_who_started_each_one(client: Client, carol, small_fleet) -> None:
    # the demo's assessment (manage.py demo, no user, no schedule) was listed as "schedule"

    assessment = assessment_completed(cluster=small_fleet.cluster, end=END)
    assert assessment.created_by is None
    assert assessment.schedule_id is None
    client.force_login(carol)
    html = client.get("/assessments/").content.decode()
    started = html.split('data-testid="started-by">')[1].split("</td>")[0]
    assert started == "command line"
    Assessment.objects.filter(pk=assessment.pk).update(created_by=carol)
    html = client.get("/assessments/").content.decode()
    assert html.split('data-testid="started-by">')[1].split("</td>")[0] == "carol"
