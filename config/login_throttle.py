"""A brake on password guessing: failed log-ins counted per (username, client IP) and per IP.

`ThrottledModelBackend` is the only authentication backend, so every password check that
comes with a request goes through it: the site's log-in page, the admin's, and any API
authentication that would ever take a password. Once a client has failed
`LOGIN_THROTTLE_FAILURES_PER_USER_IP` times for one username, or
`LOGIN_THROTTLE_FAILURES_PER_IP` times for any usernames, within `LOGIN_THROTTLE_WINDOW_S`
of its first failure, it is refused without checking the password until that window ends;
`LoginThrottleMiddleware` then answers 429 with a page that says so. Two limits: a person who
mistypes their own password is held by the first (low) one without locking out the colleagues
behind the same address, while the second catches one address trying many usernames.

Counters live in the default cache (Redis with `CACHE_URL`, so all gunicorn workers share
them; local memory otherwise, per process). The window is fixed: it starts at the first
failure and is not extended by attempts refused during the lock-out. A successful log-in
clears its (username, IP) counter, not the IP's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

_KEY_PREFIX = "login-throttle"
# Set on the HttpRequest when this request was refused or reached a limit.
_FLAG = "login_throttled"


def client_ip(request: HttpRequest) -> str:
    """The address failures are counted for.

    REMOTE_ADDR, unless `TRUST_X_FORWARDED_FOR`: then the last X-Forwarded-For entry, the one
    the reverse proxy in front of the server appended (earlier entries come from the client
    and could be anything). Behind a proxy without that setting every client shares the
    proxy's address, and the per-IP limit would lock everyone out at once.
    """
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _key(*parts: str) -> str:
    # Hashed: usernames are user input, cache keys must stay short and printable.
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"{_KEY_PREFIX}:{len(parts)}:{digest}"


class LoginThrottle:
    """The two failure counters of one (username, IP)."""

    def __init__(self, *, username: str, ip: str) -> None:
        self.user_ip_key = _key(username, ip)
        self.ip_key = _key(ip)

    def locked(self) -> bool:
        counts = cache.get_many([self.user_ip_key, self.ip_key])
        return (
            counts.get(self.user_ip_key, 0) >= settings.LOGIN_THROTTLE_FAILURES_PER_USER_IP
            or counts.get(self.ip_key, 0) >= settings.LOGIN_THROTTLE_FAILURES_PER_IP
        )

    def fail(self) -> bool:
        """Count one failure; True when it reached a limit (the next attempt is refused)."""
        user_ip = _increment(self.user_ip_key)
        ip = _increment(self.ip_key)
        return (
            user_ip >= settings.LOGIN_THROTTLE_FAILURES_PER_USER_IP
            or ip >= settings.LOGIN_THROTTLE_FAILURES_PER_IP
        )

    def succeed(self) -> None:
        cache.delete(self.user_ip_key)


def _increment(key: str) -> int:
    # add() starts the window only if none is running; incr() keeps the key's expiry
    # (Redis INCR, local memory), so the window stays fixed at the first failure.
    cache.add(key, 0, timeout=settings.LOGIN_THROTTLE_WINDOW_S)
    try:
        return int(cache.incr(key))
    except ValueError:  # the window ended between add() and incr(): this failure opens one
        cache.set(key, 1, timeout=settings.LOGIN_THROTTLE_WINDOW_S)
        return 1


def _http_request(request: Any) -> HttpRequest:
    # A DRF Request wraps the HttpRequest that the middleware sees.
    return getattr(request, "_request", request)


class ThrottledModelBackend(ModelBackend):
    """Django's username/password backend, refusing clients over the failure limits."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if request is None:
            # No remote client (a shell, a management command): nothing to throttle.
            return super().authenticate(request, username, password, **kwargs)
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        throttle = LoginThrottle(username=str(username or ""), ip=client_ip(request))
        if throttle.locked():
            setattr(_http_request(request), _FLAG, True)
            # authenticate() stops at PermissionDenied: no password check, no other backend.
            raise PermissionDenied("too many failed log-ins")
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            if throttle.fail():
                setattr(_http_request(request), _FLAG, True)
        else:
            throttle.succeed()
        return user

    async def aauthenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        # ModelBackend has its own async check, which would skip the throttle.
        return await sync_to_async(self.authenticate)(request, username, password, **kwargs)


class LoginThrottleMiddleware:
    """Turns the answer to a throttled log-in into a 429 page that says why and for how long."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not getattr(request, _FLAG, False):
            return response
        window_s = settings.LOGIN_THROTTLE_WINDOW_S
        throttled = render(
            request,
            "registration/login_throttled.html",
            {"window_minutes": -(-window_s // 60)},
            status=429,
        )
        throttled["Retry-After"] = str(window_s)  # an upper bound: the window's full length
        return throttled
