"""A local webhook receiver for tests: records every POST (path, status it answered, JSON body,
raw body and headers, whether ``X-Warden-Signature`` signs ``<t>.<body>`` with ``secret`` and
``X-Warden-Timestamp`` repeats its ``t``), answering from a per-path script of statuses (200
once a path's script is used up). The check is written here, not imported from warden, so it
holds the sender to the documented scheme; freshness is tested in tests/test_receivers.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Capture:
    def __init__(self, secret: str = "") -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get("X-Warden-Signature", "")
                fields = dict(f.partition("=")[::2] for f in header.split(","))
                t, got = fields.get("t", ""), fields.get("v1", "")
                want = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256)
                with capture.lock:
                    queue = capture.script.get(self.path, [])
                    status = queue.pop(0) if queue else 200
                    capture.requests.append(
                        {
                            "path": self.path,
                            "status": status,
                            "body": json.loads(body),
                            "raw": body,
                            "headers": dict(self.headers),
                            "verified": t.isdigit()
                            and t == self.headers.get("X-Warden-Timestamp")
                            and hmac.compare_digest(got.encode(), want.hexdigest().encode()),
                            "timestamp": self.headers.get("X-Warden-Timestamp"),
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def at(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def bodies(self, path: str) -> list[Any]:
        return [r["body"] for r in self.at(path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running(secret: str = "") -> Iterator[Capture]:
    cap = Capture(secret)
    try:
        yield cap
    finally:
        cap.close()
