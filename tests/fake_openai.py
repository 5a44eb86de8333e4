"""A TEST DOUBLE of an OpenAI-compatible chat endpoint (never used outside tests): it answers from a script
(a callable of the request body), records every request, and listens on 127.0.0.1 only."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def vllm_error(status: int, message: str) -> tuple[int, str]:
    """An error reply shaped like vLLM's (``{"error": {"message", "type", "code"}}``), for ``answer`` to return."""
    return status, json.dumps({"error": {"message": message, "type": "BadRequestError", "code": status}})


class FakeOpenAIEndpoint:
    def __init__(self, answer: Callable[[dict], str | int | tuple[int, str]], models: dict | None = None) -> None:
        """``answer(body)`` returns the message content, a dict (the whole choice, e.g. with ``logprobs``), an int
        to reply with that HTTP status, or (status, JSON error body). ``models``: what ``GET /models`` answers
        (None: HTTP 404, like a server without the route)."""
        self.requests: list[dict] = []
        self.gets: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, data: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def do_GET(self) -> None:  # noqa: N802
                fake.gets.append(self.path)
                if models is None or not self.path.endswith("/models"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                else:
                    self._send(200, json.dumps(models).encode())

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                out = answer(body)
                if isinstance(out, int):
                    self.send_response(out)
                    self.end_headers()
                    return
                if isinstance(out, tuple):
                    self._send(out[0], out[1].encode())
                    return
                if isinstance(out, dict):  # a whole choice (e.g. with logprobs)
                    self._send(200, json.dumps({"choices": [out]}).encode())
                    return
                self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": out}}]}).encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
