"""Fault injection for storage: crash the storage service, and the instance, at a chosen request.

:class:`CrashingSession` is the HTTP session of a real ``storage.Client``. When a request matches
its trigger it SIGKILLs the storage emulator (a real process) and raises
:class:`InstanceCrashed`, a ``BaseException``: like a function instance dying at that instant,
no retry, ``except Exception`` or cleanup request gets out of it (every later request raises
too). Everything before the trigger really reached the emulator; nothing after it did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests


class InstanceCrashed(BaseException):
    """The instance died (with the storage service) at the trigger."""


Trigger = Callable[[str, str, bytes], bool]


def body_mentions(fragment: str, *, method: str | None = None) -> Trigger:
    """Trigger on the first request whose URL or body names ``fragment`` (an object path)."""
    needle = fragment.encode()

    def match(verb: str, url: str, body: bytes) -> bool:
        if method is not None and verb.upper() != method:
            return False
        return needle in body or fragment.replace("/", "%2F") in url or fragment in url

    return match


class CrashingSession(requests.Session):
    def __init__(self, trigger: Trigger, on_crash: Callable[[], None]) -> None:
        super().__init__()
        self._trigger = trigger
        self._on_crash = on_crash
        self.crashed = False
        self.requests_before_crash = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if self.crashed:
            raise InstanceCrashed("the instance is gone")
        body = kwargs.get("data") or b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):  # a stream (resumable upload): match on the URL only
            body = b""
        if self._trigger(method, url, body):
            self.crashed = True
            self._on_crash()
            raise InstanceCrashed(f"crashed at {method} {url}")
        self.requests_before_crash += 1
        return super().request(method, url, *args, **kwargs)


class LosingSession(requests.Session):
    """Every request matching ``trigger`` is answered 412 Precondition Failed without reaching
    the server: a compare-and-swap that loses every race (someone else keeps writing first).
    The error body is Cloud Storage's JSON error shape
    (https://cloud.google.com/storage/docs/json_api/v1/status-codes#412_Precondition_Failed)."""

    def __init__(self, trigger: Trigger) -> None:
        super().__init__()
        self._trigger = trigger
        self.refused = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        body = kwargs.get("data") or b""
        if isinstance(body, str):
            body = body.encode()
        if isinstance(body, bytes) and self._trigger(method, url, body):
            self.refused += 1
            return _json_response(
                412,
                {
                    "error": {
                        "code": 412,
                        "message": "At least one of the pre-conditions you specified did not hold.",
                        "errors": [
                            {
                                "domain": "global",
                                "reason": "conditionNotMet",
                                "message": "At least one of the pre-conditions you specified "
                                "did not hold.",
                            }
                        ],
                    }
                },
                url,
                method,
            )
        return super().request(method, url, *args, **kwargs)


def _json_response(
    status: int, payload: dict[str, Any], url: str, method: str = "POST"
) -> requests.Response:
    import json

    resp = requests.Response()
    resp.request = requests.Request(method, url).prepare()  # the library names it in errors
    resp.status_code = status
    resp._content = json.dumps(payload).encode()
    resp.headers["Content-Type"] = "application/json; charset=UTF-8"
    resp.url = url
    return resp


class LandThen503Proxy:
    """A real HTTP proxy in front of the storage emulator. The first request matching each of
    ``fragments`` (an object path, in a conditional upload: ``ifGenerationMatch`` in the URL) is
    forwarded — the write lands — and then answered ``503 Service Unavailable`` instead of the
    emulator's 200, as a load balancer that lost the backend's response would. The client
    library retries the upload with the same precondition and gets a 412 for its own write.

    ``url`` goes in ``client_options={"api_endpoint": ...}``. ``hits`` lists the fragments that
    fired. Stop with :meth:`close`.
    """

    def __init__(self, upstream: str, fragments: list[str]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream = upstream.rstrip("/")
        self.pending = list(fragments)
        self.hits: list[str] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in {"host", "content-length", "connection"}
                }
                upstream = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body,
                    headers=headers,
                    timeout=60,
                    allow_redirects=False,
                )
                fired = None
                if self.command == "POST" and "ifGenerationMatch" in self.path:
                    with lock:
                        for fragment in proxy.pending:
                            if fragment.encode() in body or fragment.replace("/", "%2F") in (
                                self.path
                            ):
                                fired = fragment
                                proxy.pending.remove(fragment)
                                proxy.hits.append(fragment)
                                break
                if fired is not None and upstream.status_code < 300:
                    # Cloud Storage's JSON error shape for a 503 ("backendError"):
                    # https://cloud.google.com/storage/docs/json_api/v1/status-codes#503_Service_Unavailable
                    payload = b'{"error": {"code": 503, "message": "Service Unavailable"}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(upstream.status_code)
                for k, v in upstream.headers.items():
                    if k.lower() not in {
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    }:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PausingSession(requests.Session):
    """The first request matching ``trigger`` waits until :meth:`release` before it is sent:
    the instance stalls at that instant (a long GC pause, a slow network) while others act.
    ``reached`` is set when it starts waiting."""

    def __init__(self, trigger: Trigger, *, timeout: float = 60.0) -> None:
        import threading

        super().__init__()
        self._trigger = trigger
        self._timeout = timeout
        self._fired = False
        self.reached = threading.Event()
        self._go = threading.Event()

    def release(self) -> None:
        self._go.set()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        body = kwargs.get("data") or b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            body = b""
        if not self._fired and self._trigger(method, url, body):
            self._fired = True
            self.reached.set()
            if not self._go.wait(self._timeout):
                raise TimeoutError("never released")
        return super().request(method, url, *args, **kwargs)
