from subprocess import Popen

import pytest

from config.celery import app, ping


def test_it_declares_the_four_queues() -> None:
    assert sorted(queue.name for queue in app.conf.task_queues) == [
        "bench",
        "default",
        "rollout",
        "sim",
    ]


def test_it_routes_long_work_to_its_own_queue() -> None:
    routes = app.conf.task_routes
    assert routes["advisor.tasks.sim.*"] == {"queue": "sim"}
    assert routes["advisor.tasks.bench.*"] == {"queue": "bench"}
    assert routes["advisor.tasks.rollout.*"] == {"queue": "rollout"}


@pytest.mark.integration
def test_it_round_trips_a_task_through_redis_and_a_real_worker(
    celery_worker: Popen[bytes],
) -> None:
    result = ping.delay()
    assert result.get(timeout=30).startswith("pong from ")
