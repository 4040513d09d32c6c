"""A vLLM `/metrics` whose samples are numbered: lost or repeated samples can be counted.

Its `request_success_total` is the number of scrapes answered so far, so each engine sample
the agent takes carries its scrape's number (`requests_finished_total`): the samples stored
should be exactly 1..`answered`, once each. `serving = False` answers 503 (no sample), so a
test can stop sampling before it kills the agent.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

MODEL = "tiny"


class NumberedScrapes:
    """A `stub_http.serving` handler for ("GET", "/metrics")."""

    def __init__(self, model: str = MODEL) -> None:
        self.model = model
        self.answered = 0
        self.serving = True
        self._lock = threading.Lock()

    def __call__(self, request: BaseHTTPRequestHandler) -> None:
        with self._lock:
            if self.serving:
                self.answered += 1
            status, body = (200, self.metrics(self.answered)) if self.serving else (503, "")
        data = body.encode()
        request.send_response(status)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def metrics(self, n: int) -> str:
        label = f'model_name="{self.model}"'
        return (
            f"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{{label}}} 0\n"
            f"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{{label}}} 0\n"
            "# TYPE vllm:request_success_total counter\n"
            f'vllm:request_success_total{{finished_reason="stop",{label}}} {n}\n'
        )
