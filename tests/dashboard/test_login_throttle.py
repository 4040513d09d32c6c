"""Failed log-ins are throttled per (username, IP) and per IP, on the site's and the admin's page.

Limits are set low here (3 per username and address, 5 per address); the counters live in
the local-memory cache, cleared around each test so no other test meets a lock-out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import aauthenticate
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client, RequestFactory, override_settings

from config.login_throttle import LoginThrottle, client_ip
from tests.support.components import REDIS_URL, missing, port_open

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
THROTTLED = "Log-ins from your address are paused"


@pytest.fixture(autouse=True)
def _throttle(settings: Any) -> Iterator[None]:
    settings.LOGIN_THROTTLE_FAILURES_PER_USER_IP = 3
    settings.LOGIN_THROTTLE_FAILURES_PER_IP = 5
    settings.LOGIN_THROTTLE_WINDOW_S = 900
    cache.clear()
    yield
    cache.clear()


def _post(ip: str, username: str, password: str, path: str = LOGIN) -> Any:
    client = Client(REMOTE_ADDR=ip)
    response: Any = client.post(path, {"username": username, "password": password})
    response.logged_in = "_auth_user_id" in client.session
    return response


def test_it_locks_a_username_out_from_one_address_after_the_limit(carol: User) -> None:
    answers = [_post("10.0.0.1", "carol", "wrong").status_code for _ in range(3)]
    assert answers == [200, 200, 429]  # the third failure reaches the limit and says so

    right = _post("10.0.0.1", "carol", "password")
    assert right.status_code == 429
    assert right.logged_in is False  # the right password is not even checked
    assert right["Retry-After"] == "900"
    assert THROTTLED in right.content.decode()
    assert "Try again in 15 minutes" in right.content.decode()


def test_it_tells_a_wrong_password_apart_until_the_limit(carol: User) -> None:
    response = _post("10.0.0.1", "carol", "wrong")
    assert response.status_code == 200
    assert "Wrong username or password." in response.content.decode()
    assert THROTTLED not in response.content.decode()


def test_it_leaves_other_addresses_and_other_users_open(carol: User, bob: User) -> None:
    for _ in range(3):
        _post("10.0.0.1", "carol", "wrong")

    from_elsewhere = _post("10.0.0.2", "carol", "password")
    other_user = _post("10.0.0.1", "bob", "password")

    assert (from_elsewhere.status_code, from_elsewhere.logged_in) == (302, True)
    assert (other_user.status_code, other_user.logged_in) == (302, True)


def test_it_locks_an_address_out_that_tries_many_usernames(alice: User) -> None:
    answers = [_post("10.0.0.9", f"guess{n}", "wrong").status_code for n in range(5)]
    assert answers == [200, 200, 200, 200, 429]

    right = _post("10.0.0.9", "alice", "password")
    assert (right.status_code, right.logged_in) == (429, False)


def test_it_throttles_the_admin_login_too(alice: User) -> None:
    answers = [_post("10.0.0.1", "alice", "wrong", ADMIN_LOGIN).status_code for _ in range(3)]
    assert answers == [200, 200, 429]

    right = _post("10.0.0.1", "alice", "password", ADMIN_LOGIN)
    assert (right.status_code, right.logged_in) == (429, False)
    assert THROTTLED in right.content.decode()
    # The two pages share the counters: the site's log-in is closed to this pair as well.
    assert _post("10.0.0.1", "alice", "password").status_code == 429


def test_it_opens_again_when_the_window_ends(carol: User, settings: Any) -> None:
    settings.LOGIN_THROTTLE_WINDOW_S = 1
    for _ in range(3):
        _post("10.0.0.1", "carol", "wrong")
    assert _post("10.0.0.1", "carol", "password").status_code == 429

    time.sleep(1.1)

    right = _post("10.0.0.1", "carol", "password")
    assert (right.status_code, right.logged_in) == (302, True)


def test_it_clears_the_username_count_on_a_successful_login(carol: User) -> None:
    for _ in range(2):
        _post("10.0.0.1", "carol", "wrong")
    assert _post("10.0.0.1", "carol", "password").status_code == 302

    # Two more failures would make four in the window without the reset.
    answers = [_post("10.0.0.1", "carol", "wrong").status_code for _ in range(2)]
    assert answers == [200, 200]


def test_it_never_counts_successful_logins(carol: User) -> None:
    # The browser tests log in through the form dozens of times from 127.0.0.1.
    answers = {_post("127.0.0.1", "carol", "password").status_code for _ in range(30)}
    assert answers == {302}


def test_it_leaves_logins_without_a_request_alone(carol: User) -> None:
    # Client.login() (and a shell) authenticate with no request: no client to count.
    for _ in range(6):
        assert Client().login(username="carol", password="wrong") is False
    assert Client().login(username="carol", password="password") is True


def test_it_throttles_the_async_check_too(carol: User) -> None:
    # ModelBackend.aauthenticate checks passwords itself; ours goes through the throttle.
    for _ in range(3):
        _post("10.0.0.1", "carol", "wrong")
    request = RequestFactory().post(LOGIN, REMOTE_ADDR="10.0.0.1")

    user = async_to_sync(aauthenticate)(request, username="carol", password="password")

    assert user is None
    assert request.login_throttled is True  # type: ignore[attr-defined]


def test_it_counts_the_proxy_appended_address_only_when_trusted(
    settings: Any,
) -> None:
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.254", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7"
    )
    settings.TRUST_X_FORWARDED_FOR = False
    assert client_ip(request) == "10.0.0.254"

    settings.TRUST_X_FORWARDED_FOR = True
    # The last entry is the one the proxy appended; the first is whatever the client sent.
    assert client_ip(request) == "203.0.113.7"
    assert client_ip(RequestFactory().get("/", REMOTE_ADDR="10.0.0.254")) == "10.0.0.254"


@pytest.mark.integration
def test_it_keeps_the_window_fixed_in_redis(carol: User, settings: Any) -> None:
    # Deployments share the counters through Redis (CACHE_URL); INCR must keep the key's TTL,
    # or every failure would restart the window and a lock-out would never end.
    url = urlsplit(REDIS_URL)
    if not port_open(url.hostname or "127.0.0.1", url.port or 6379):
        missing("Redis", f"nothing listens at {REDIS_URL}; set TEST_REDIS_URL")
    redis_cache = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    settings.LOGIN_THROTTLE_WINDOW_S = 2
    throttle = LoginThrottle(username="carol", ip="10.0.0.1")
    keys = [throttle.user_ip_key, throttle.ip_key]
    # A context, not the settings fixture: the autouse fixture's clear() must not FLUSHDB.
    with override_settings(CACHES=redis_cache):
        cache.delete_many(keys)
        try:
            _post("10.0.0.1", "carol", "wrong")
            time.sleep(1.0)
            answers = [_post("10.0.0.1", "carol", "wrong").status_code for _ in range(2)]
            assert answers == [200, 429]
            assert throttle.locked() is True

            time.sleep(1.2)  # 2.2 s after the first failure, 1.2 s after the last

            right = _post("10.0.0.1", "carol", "password")
            assert (right.status_code, right.logged_in) == (302, True)
        finally:
            cache.delete_many(keys)
