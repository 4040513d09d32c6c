"""The Celery app of the reliability tests' own worker, which they kill and restart.

Same app and tasks as production, on the test broker under its own key prefix
(`GCA_ROLLOUT_TEST_PREFIX`), so the suite's shared worker never takes its messages and killing
this one really stops the rollout's worker. Steps are polled faster than in production.
"""

from __future__ import annotations

import os

from django.conf import settings

from config.celery import app

PREFIX = os.environ.get("GCA_ROLLOUT_TEST_PREFIX", "")
if PREFIX:
    app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
settings.ROLLOUT_POLL_S = float(os.environ.get("GCA_ROLLOUT_TEST_POLL_S", "0.5"))
settings.ROLLOUT_LEASE_GRACE_S = float(os.environ.get("GCA_ROLLOUT_TEST_GRACE_S", "3"))

__all__ = ["app"]
