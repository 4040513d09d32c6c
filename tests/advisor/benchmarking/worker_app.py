"""The Celery app of `test_worker_lost`'s own worker, which that test SIGKILLs mid-job.

Same app and tasks as production, on the test broker under its own key prefix
(`GCA_REAPER_TEST_PREFIX`), so the suite's shared worker never takes its messages and
killing this one really kills the job's worker. Heartbeats come every
`GCA_REAPER_TEST_HEARTBEAT_S` (0.2 s) instead of 30 s.
"""

from __future__ import annotations

import os

from django.conf import settings

from config.celery import app

PREFIX = os.environ.get("GCA_REAPER_TEST_PREFIX", "")
if PREFIX:
    app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
settings.JOB_HEARTBEAT_INTERVAL_S = float(os.environ.get("GCA_REAPER_TEST_HEARTBEAT_S", "0.2"))

__all__ = ["app"]
