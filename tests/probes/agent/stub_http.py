"""A tiny threaded HTTP server answering canned responses (for sampler and proxy tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def serving(routes: dict[tuple[str, str], Handler], port: int = 0) -> Iterator[str]:
    """Serve `routes` {(method, path): handler} on `port` (0: a free one); yields the URL."""

    class Routed(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Like uvicorn (vLLM's server): small SSE frames leave at once, not after an ACK.
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            handler = routes.get((self.command, self.path.split("?", 1)[0]))
            if handler is None:
                body = b'{"error": "not found"}'
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            handler(self)

        do_GET = do_POST = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Routed)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def text(body: str, status: int = 200, content_type: str = "text/plain") -> Handler:
    def handle(request: BaseHTTPRequestHandler) -> None:
        data = body.encode()
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    return handle
