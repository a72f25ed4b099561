"""A scripted HTTP server on 127.0.0.1 standing in for the API server in kube-layer unit tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tokenscale.kube import client as kube_client


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    content_type: str | None


Handler = Callable[[Request], tuple[int, Any]]


@dataclass
class FakeApiServer:
    """Routes (method, path) to handlers; every request is recorded in ``requests``."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def on(self, method: str, path: str, handler: Handler | tuple[int, Any]) -> None:
        self.routes[(method, path)] = handler if callable(handler) else (lambda _request, fixed=handler: fixed)

    def answer(self, request: Request) -> tuple[int, Any]:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return 404, {"kind": "Status", "message": f"{request.path} not found", "reason": "NotFound"}
        return handler(request)


@contextmanager
def serve(server: FakeApiServer, tmp_path: Path) -> Iterator[kube_client.client.ApiClient]:
    """Run ``server`` on a free 127.0.0.1 port and yield an API client configured for it by a kubeconfig."""

    class _Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                body=json.loads(raw) if raw else None,
                content_type=self.headers.get("Content-Type"),
            )
            status, body = server.answer(request)
            # bytes are sent as they are (a watch's newline-delimited events), anything else as JSON.
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_PATCH = do_POST = _handle  # noqa: N815 (http.server dispatches on these names)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{httpd.server_port}"}}],
                "users": [{"name": "fake", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    api = kube_client.build_api_client(kubeconfig=kubeconfig)
    try:
        yield api
    finally:
        api.close()
        httpd.shutdown()
        httpd.server_close()
        thread.join()
