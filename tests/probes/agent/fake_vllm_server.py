"""A stand-in vLLM server process for the local controller's tests (seconds, not minutes).

Started exactly as the controller starts vLLM (`<python> -m vllm.entrypoints.openai.api_server
--model M --served-model-name N --host H --port P [engine args]`, through the `fake-python`
wrapper in this folder), it serves /health and /v1/completions like vLLM. Engine args steer it:
`--refuse` exits 1 at once with a pydantic-style error (vLLM refusing a config), and
`--broken-engine` answers /health but fails every completion (as vLLM does when its engine
core died after start-up).
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main(argv: list[str]) -> int:
    args = argv[argv.index("vllm.entrypoints.openai.api_server") + 1 :]
    port = int(args[args.index("--port") + 1])
    name = args[args.index("--served-model-name") + 1]
    if "--refuse" in args:
        print("pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig")
        print("  Value error, --refuse asked this server not to start [type=value_error]")
        return 1
    broken = "--broken-engine" in args

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200 if self.path == "/health" else 404, {})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if broken:
                self._send(500, {"error": {"message": "EngineCore encountered an issue."}})
            else:
                self._send(200, {"model": name, "choices": [{"text": "hi", "index": 0}]})

        def log_message(self, *_: object) -> None:
            pass

    print(f"serving {name} on {port} with {args}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
