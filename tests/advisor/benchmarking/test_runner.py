"""The load client against a fake OpenAI server: measurement, caps, cancel, failures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from advisor.benchmarking.results import BenchmarkResult
from advisor.benchmarking.runner import (
    BenchmarkConfigError,
    Limits,
    RunOptions,
    Target,
    run_benchmark,
)
from advisor.engine.workload import Workload, closed_loop_workload
from tests.advisor.benchmarking.fake_openai import MODEL, FakeServer, fake_server_thread
from tests.support.components import free_port

FAST = Limits(connect_timeout_s=2, read_timeout_s=2, request_timeout_s=5, setup_timeout_s=2,
              poll_s=0.05)  # fmt: skip
QUIET = RunOptions(warmup_requests=0, metrics_sample_s=0)


@pytest.fixture
def fake() -> Iterator[tuple[str, FakeServer]]:
    with fake_server_thread() as served:
        yield served


def _closed(n: int, users: int, prompt: int = 16, output: int = 8) -> Workload:
    return closed_loop_workload(
        num_requests=n, concurrency=users, prompt_tokens=prompt, output_tokens=output
    )


def test_it_measures_every_request_of_a_streaming_run(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    result = run_benchmark(Target(url, MODEL), _closed(20, 4, prompt=16, output=8), limits=FAST)

    assert result.status == "completed", result.error
    assert result.summary["completed"] == 20
    assert result.summary["failed"] == 0
    assert result.summary["total_input_tokens"] == 20 * 16
    assert result.summary["total_output_tokens"] == 20 * 8
    assert result.summary["prompt_tokens_mismatched"] == 0
    for request in result.requests:
        assert request.status == "ok"
        assert len(request.itl_s) == 7  # 8 token frames: 1 first + 7 gaps
        assert request.ttft_s is not None
        assert request.e2e_s is not None
        assert 0 <= request.ttft_s <= request.e2e_s
        assert request.tokens_from_usage
    body = server.bodies[-1]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True
    assert body["max_tokens"] == 8
    assert len(body["prompt"]) == 16  # token ids: exact length
    assert server.requests == 21  # one warm-up request, untimed
    assert result.server_metrics["generation_tokens"] == 20 * 8


def test_it_times_frames_that_arrive_apart(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.itl_s = 0.02
    server.behaviour.ttft_s = 0.1
    result = run_benchmark(Target(url, MODEL), _closed(2, 1, output=5), limits=FAST, options=QUIET)

    assert result.status == "completed", result.error
    for request in result.requests:
        assert request.ttft_s is not None
        assert request.ttft_s >= 0.1
        assert len(request.itl_s) == 4
        # the server sleeps 20 ms between frames (two frames read together give a 0 gap)
        assert sum(request.itl_s) >= 4 * 0.02 - 0.002
        assert request.e2e_s is not None
        assert request.tpot_s == pytest.approx((request.e2e_s - request.ttft_s) / 4)


def test_it_never_has_more_requests_in_flight_than_the_workload_allows(
    fake: tuple[str, FakeServer],
) -> None:
    url, server = fake
    server.behaviour.itl_s = 0.005
    result = run_benchmark(Target(url, MODEL), _closed(24, 3), limits=FAST, options=QUIET)

    assert result.status == "completed", result.error
    assert server.max_running == 3


def test_it_caps_concurrency_at_the_safety_limit(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.itl_s = 0.005
    capped = Limits(**{**FAST.__dict__, "max_concurrency": 2})
    result = run_benchmark(Target(url, MODEL), _closed(12, 50), limits=capped, options=QUIET)

    assert result.status == "completed", result.error
    assert server.max_running == 2
    assert result.config["concurrency"] == 2


def test_it_sends_each_request_at_its_arrival_time(fake: tuple[str, FakeServer]) -> None:
    url, _server = fake
    arrivals = [0.0, 0.15, 0.3, 0.6]
    workload = Workload(np.array(arrivals), np.full(4, 8), np.full(4, 4))
    result = run_benchmark(Target(url, MODEL), workload, limits=FAST, options=QUIET)

    assert result.status == "completed", result.error
    sent = [request.sent_s for request in result.requests]
    assert sent == sorted(sent)  # type: ignore[type-var]
    for request, arrival in zip(result.requests, arrivals, strict=True):
        assert request.scheduled_s == pytest.approx(arrival)
        # never early; late only by scheduling noise (generous: the CI box has 2 busy cores)
        assert arrival - 0.005 <= request.sent_s <= arrival + 1.0  # type: ignore[operator]


def test_it_fails_cleanly_when_nothing_listens(fake: tuple[str, FakeServer]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_benchmark(Target(dead, MODEL), _closed(5, 2), limits=FAST)

    assert result.status == "failed"
    assert dead in result.error
    assert "/v1/models" in result.error
    assert [request.status for request in result.requests] == ["not_sent"] * 5
    assert result.summary["completed"] == 0


def test_it_fails_instead_of_hanging_on_a_server_that_never_answers() -> None:
    # A socket that listens but never accepts: the kernel completes the TCP handshake.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        result = run_benchmark(Target(url, MODEL), _closed(3, 3), limits=FAST)
        elapsed_s = time.monotonic() - started

    assert result.status == "failed"
    assert "/v1/models" in result.error
    assert elapsed_s < 30  # bounded by setup_timeout_s=2, not a hang


def test_it_times_out_a_stream_that_stops_sending(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.hang = True
    result = run_benchmark(Target(url, MODEL), _closed(2, 2), limits=FAST, options=QUIET)

    assert result.status == "failed"
    assert "every request failed" in result.error
    assert [request.status for request in result.requests] == ["timeout", "timeout"]


def test_it_fails_the_run_when_the_warm_up_request_fails(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.fail_status = 503
    result = run_benchmark(Target(url, MODEL), _closed(4, 2), limits=FAST)

    assert result.status == "failed"
    assert "warm-up" in result.error
    assert "HTTP 503" in result.error
    assert server.requests == 1  # nothing after the failed warm-up
    assert all(request.status == "not_sent" for request in result.requests)


def test_it_counts_http_errors_per_request(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.fail_status = 500
    server.behaviour.fail_every = 2
    result = run_benchmark(Target(url, MODEL), _closed(10, 1), limits=FAST, options=QUIET)

    assert result.status == "completed"
    assert result.summary["completed"] == 5
    assert result.summary["failed"] == 5
    failed = [request for request in result.requests if request.status == "error"]
    assert {request.http_status for request in failed} == {500}
    assert all("injected failure" in request.error for request in failed)


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ({"drop_after": 3}, ""),
        ({"error_frame_after": 2}, "error frame"),
    ],
)
def test_it_marks_broken_streams_as_errors(
    fake: tuple[str, FakeServer], behaviour: dict[str, int], message: str
) -> None:
    url, server = fake
    for key, value in behaviour.items():
        setattr(server.behaviour, key, value)
    result = run_benchmark(Target(url, MODEL), _closed(2, 1), limits=FAST, options=QUIET)

    assert result.status == "failed"
    assert [request.status for request in result.requests] == ["error", "error"]
    assert all(message in request.error for request in result.requests)


def test_it_counts_frames_when_the_server_sends_no_usage(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.omit_usage = True
    result = run_benchmark(Target(url, MODEL), _closed(3, 1, output=6), limits=FAST, options=QUIET)

    assert result.status == "completed"
    assert [request.output_tokens for request in result.requests] == [6, 6, 6]
    assert not any(request.tokens_from_usage for request in result.requests)


def test_it_stops_at_the_duration_cap(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.itl_s = 0.05
    capped = Limits(**{**FAST.__dict__, "max_duration_s": 0.5})
    started = time.monotonic()
    result = run_benchmark(
        Target(url, MODEL), _closed(10, 2, output=100), limits=capped, options=QUIET
    )

    assert time.monotonic() - started < 10  # 10 requests x 5 s each were asked for
    assert result.status == "duration_capped"
    assert "duration cap" in result.error
    statuses = [request.status for request in result.requests]
    assert statuses.count("cancelled") == 2  # the two in flight
    assert statuses.count("not_sent") == 8
    assert result.duration_s == pytest.approx(0.5, abs=0.4)


def test_it_stops_sending_once_cancelled(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    flag = threading.Event()
    arrivals = np.arange(40, dtype=np.float64) * 0.05  # one request every 50 ms for 2 s
    workload = Workload(arrivals, np.full(40, 8), np.full(40, 4))
    timer = threading.Timer(0.5, flag.set)
    timer.start()
    result = run_benchmark(
        Target(url, MODEL), workload, limits=FAST, options=QUIET, cancel=flag.is_set
    )
    timer.cancel()

    assert result.status == "cancelled"
    sent = [request for request in result.requests if request.status != "not_sent"]
    assert 3 <= len(sent) < 40
    # nothing sent later than one poll period after the flag was raised
    assert max(request.sent_s or 0.0 for request in sent) < 0.5 + 0.3
    assert server.requests == len(sent)


def test_it_reports_progress(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.itl_s = 0.01
    seen: list[tuple[int, int]] = []
    result = run_benchmark(
        Target(url, MODEL),
        _closed(20, 2, output=5),
        limits=FAST,
        options=QUIET,
        progress=lambda done, total: seen.append((done, total)),
    )

    assert result.status == "completed"
    assert seen
    assert {total for _done, total in seen} == {20}
    assert [done for done, _total in seen] == sorted(done for done, _total in seen)


def test_it_keeps_running_when_a_callback_raises(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    server.behaviour.itl_s = 0.01

    def broken() -> bool:
        raise RuntimeError("database is down")

    result = run_benchmark(
        Target(url, MODEL), _closed(4, 2, output=30), limits=FAST, options=QUIET, cancel=broken
    )

    assert result.status == "completed"
    assert any("database is down" in warning for warning in result.warnings)


def test_it_refuses_a_model_the_server_does_not_serve(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    result = run_benchmark(Target(url, "other-model"), _closed(2, 1), limits=FAST)

    assert result.status == "failed"
    assert "'other-model' not served" in result.error
    assert MODEL in result.error
    assert server.requests == 0


def test_it_refuses_prompts_longer_than_the_context_unless_clipping(
    fake: tuple[str, FakeServer],
) -> None:
    url, server = fake
    workload = Workload(np.zeros(3), np.array([10, 5000, 10]), np.array([4, 4, 4]))
    refused = run_benchmark(Target(url, MODEL), workload, limits=FAST, options=QUIET)

    assert refused.status == "failed"
    assert "request 1: prompt_tokens 5000 + output_tokens 4" in refused.error
    assert server.requests == 0

    clipped = run_benchmark(
        Target(url, MODEL),
        workload,
        limits=FAST,
        options=RunOptions(warmup_requests=0, clip_to_max_model_len=True),
    )
    assert clipped.status == "completed", clipped.error
    assert clipped.prompts is not None
    assert clipped.prompts.clipped == 1
    assert clipped.requests[1].prompt_tokens == 4096 - 4


def test_it_builds_exact_chat_prompts_with_the_template(fake: tuple[str, FakeServer]) -> None:
    url, server = fake
    workload = _closed(5, 5, prompt=40, output=3)
    result = run_benchmark(Target(url, MODEL, api="chat"), workload, limits=FAST, options=QUIET)

    assert result.status == "completed", result.error
    assert result.prompts is not None
    assert result.prompts.mode == "text"
    assert result.prompts.mismatched == 0
    assert result.summary["prompt_tokens_mismatched"] == 0
    assert [request.prompt_tokens for request in result.requests] == [40] * 5
    assert server.bodies[-1]["max_completion_tokens"] == 3


def test_it_runs_without_metrics_and_says_why(fake: tuple[str, FakeServer]) -> None:
    url, _server = fake
    elsewhere = f"http://127.0.0.1:{free_port()}"
    result = run_benchmark(
        Target(url, MODEL, metrics_url=elsewhere), _closed(3, 1), limits=FAST, options=QUIET
    )

    assert result.status == "completed"
    assert result.server_metrics == {}
    assert elsewhere in result.metrics_error


def _sampled_run(url: str, server: FakeServer, *, cut: list[int]) -> BenchmarkResult:
    """8 requests, 4 at a time, 40 tokens 10 ms apart; gauges sampled every 100 ms."""
    server.behaviour.itl_s = 0.01
    server.behaviour.metrics_cut = cut
    return run_benchmark(
        Target(url, MODEL),
        _closed(8, 4, output=40),
        limits=FAST,
        options=RunOptions(warmup_requests=0, metrics_sample_s=0.1),
    )


def test_it_samples_gauges_during_the_run(fake: tuple[str, FakeServer]) -> None:
    result = _sampled_run(*fake, cut=[])

    assert result.status == "completed"
    assert result.server_metrics["samples"] >= 3
    assert result.server_metrics["max_num_requests_running"] == 4
    assert result.server_metrics["samples_failed"] == 0
    assert result.server_metrics["last_sample_error"] is None


def test_it_counts_a_failed_sample_and_goes_on_sampling(fake: tuple[str, FakeServer]) -> None:
    result = _sampled_run(*fake, cut=[2])  # answer 1 is the scrape before the run

    assert result.status == "completed"
    assert result.metrics_error == ""
    assert result.server_metrics["samples_failed"] == 1
    assert "IncompleteRead" in result.server_metrics["last_sample_error"]
    # the answers after the cut one were sampled: the sampler did not stop at the failure
    assert result.server_metrics["samples"] >= 2
    assert result.server_metrics["max_num_requests_running"] == 4


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Target("ftp://x", MODEL), "base_url"),
        (lambda: Target("http://127.0.0.1:1", " "), "model"),
        (lambda: Target("http://127.0.0.1:1", MODEL, api="embeddings"), "api"),  # type: ignore[arg-type]
        (lambda: Limits(max_concurrency=0), "max_concurrency"),
        (lambda: Limits(read_timeout_s=float("inf")), "read_timeout_s"),
        (lambda: RunOptions(warmup_requests=-1), "warmup_requests"),
        (lambda: RunOptions(extra_body={"stream": False}), "extra_body"),
    ],
)
def test_it_names_the_bad_field(build: object, field: str) -> None:
    with pytest.raises(BenchmarkConfigError, match=field):
        build()  # type: ignore[operator]


def test_it_refuses_more_requests_than_the_cap() -> None:
    with pytest.raises(BenchmarkConfigError, match="max_requests"):
        run_benchmark(
            Target("http://127.0.0.1:1", MODEL), _closed(11, 1), limits=Limits(max_requests=10)
        )


def test_its_result_is_json_safe(fake: tuple[str, FakeServer]) -> None:
    url, _server = fake
    result = run_benchmark(Target(url, MODEL, headers={"Authorization": "Bearer s3cret"}),
                           _closed(3, 1), limits=FAST, options=QUIET)  # fmt: skip

    text = json.dumps(result.to_json(), allow_nan=False)
    assert "s3cret" not in text  # header values never stored
    assert "Authorization" in text


@pytest.mark.parametrize("style", [{"crlf": True}, {"ping_comments": True}, {"split_frames": True}])
def test_it_reads_any_valid_event_stream_framing(
    fake: tuple[str, FakeServer], style: dict[str, bool]
) -> None:
    url, server = fake
    for key, value in style.items():
        setattr(server.behaviour, key, value)
    result = run_benchmark(Target(url, MODEL), _closed(3, 1, output=6), limits=FAST, options=QUIET)

    assert result.status == "completed", result.error
    assert [request.output_tokens for request in result.requests] == [6, 6, 6]
    assert [len(request.itl_s) for request in result.requests] == [5, 5, 5]
