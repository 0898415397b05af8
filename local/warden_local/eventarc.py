"""A small Eventarc stand-in for Pub/Sub triggers: push subscription → binary CloudEvent.

The Pub/Sub emulator pushes ``{"subscription": ..., "message": {...}}`` to ``/push/{route}``;
we re-post it to the route's function exactly as Eventarc does (binary-mode CloudEvent, ``ce-*``
headers, the push envelope as the JSON body) and relay the outcome so the emulator retries like
Pub/Sub would: the function's 2xx → 204 (ack); its non-2xx → 500; unreachable or too slow → 503.

We do not post the raw push body to functions-framework's ``/projects/P/topics/T`` conversion:
that path drops ``subscription`` and adds ``@type``, which is not what Eventarc delivers.

CLI::

    python -m warden_local.eventarc --port 8085 --routes routes.json --log deliveries.jsonl

``routes.json`` is a list of ``{"name", "target_url", "topic"}``; ``--subscribe`` also creates the
topics and a push subscription per route in the emulator named by ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Self

import requests

log = logging.getLogger("warden_local.eventarc")

PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_TOPIC = re.compile(r"^projects/([^/]+)/topics/([^/]+)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: Pub/Sub pushes at most 10 MB; anything larger is not a push.
_MAX_BODY = 16 * 1024 * 1024


class PushError(ValueError):
    """The push body is not a Pub/Sub push; answered 400 and never forwarded."""


@dataclass(frozen=True)
class Route:
    """One Eventarc trigger: messages published to ``topic`` go to ``target_url``."""

    name: str
    target_url: str
    topic: str  # projects/P/topics/T

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"route name must be URL-safe ([A-Za-z0-9_.-]+): {self.name!r}")
        if not _TOPIC.match(self.topic):
            raise ValueError(f"route topic must be projects/P/topics/T: {self.topic!r}")
        if not self.target_url.startswith(("http://", "https://")):
            raise ValueError(f"route target_url must be an http(s) URL: {self.target_url!r}")

    @property
    def source(self) -> str:
        return f"//pubsub.googleapis.com/{self.topic}"


def build_cloud_event(route: Route, push: Any) -> tuple[dict[str, str], bytes]:
    """Headers and body of the binary-mode CloudEvent Eventarc sends for one push."""
    if not isinstance(push, dict) or not isinstance(push.get("message"), dict):
        raise PushError("push body must be a JSON object with a 'message' object")
    message = dict(push["message"])
    message_id = message.get("messageId") or message.get("message_id")
    publish_time = message.get("publishTime") or message.get("publish_time")
    if not isinstance(message_id, str) or not message_id:
        raise PushError("message has no messageId")
    if not isinstance(publish_time, str) or not publish_time:
        raise PushError("message has no publishTime")
    subscription = push.get("subscription", "")
    if not isinstance(subscription, str):
        raise PushError("subscription must be a string")
    # Eventarc's envelope carries both spellings; the emulator may send only one.
    message["messageId"] = message["message_id"] = message_id
    message["publishTime"] = message["publish_time"] = publish_time
    headers = {
        "ce-id": message_id,
        "ce-source": route.source,
        "ce-type": PUBLISHED,
        "ce-specversion": "1.0",
        "ce-time": publish_time,
        "Content-Type": "application/json",
    }
    body = json.dumps({"subscription": subscription, "message": message}).encode()
    return headers, body


class EventarcShim:
    """``ThreadingHTTPServer`` on 127.0.0.1 that turns Pub/Sub pushes into Eventarc deliveries."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        port: int | None = None,
        log: Path | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.routes = {r.name: r for r in routes}
        if len(self.routes) != len(routes):
            raise ValueError("route names must be unique")
        self.timeout = timeout
        self._port = port or 0
        self._log_path = log
        self._log_file: IO[str] | None = None
        self._lock = threading.Lock()
        self._deliveries: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        if self._log_path is not None:
            self._log_file = self._log_path.open("a", encoding="utf-8")
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler_for(self))
        # Daemon handler threads: stop() must not hang on a function that never answers.
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="eventarc-shim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- public state ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("EventarcShim is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push_url(self, route_name: str) -> str:
        if route_name not in self.routes:
            raise KeyError(f"unknown route {route_name!r}")
        return f"{self.endpoint}/push/{route_name}"

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """A snapshot (copy) of every forwarded delivery so far, oldest first."""
        with self._lock:
            return [dict(d) for d in self._deliveries]

    # -- delivery --------------------------------------------------------------------------------

    def deliver(self, route: Route, push: Any) -> int:
        """Forward one push to ``route``; return the status to answer the emulator with."""
        headers, body = build_cloud_event(route, push)  # PushError → 400, nothing forwarded
        status: int | None = None
        error: str | None = None
        started = time.monotonic()
        try:
            # trust_env=False: a proxy from the environment must never see loopback traffic.
            with requests.Session() as session:
                session.trust_env = False
                resp = session.post(
                    route.target_url,
                    data=body,
                    headers=headers,
                    timeout=(min(10.0, self.timeout), self.timeout),
                )
            status = resp.status_code
            if not 200 <= status < 300:
                error = resp.text[:500]
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        seconds = round(time.monotonic() - started, 4)
        self._record(
            {
                "route": route.name,
                "message_id": headers["ce-id"],
                "status": status,
                "seconds": seconds,
                "error": error,
            }
        )
        if status is None:
            return HTTPStatus.SERVICE_UNAVAILABLE
        return HTTPStatus.NO_CONTENT if 200 <= status < 300 else HTTPStatus.INTERNAL_SERVER_ERROR

    def _record(self, delivery: dict[str, Any]) -> None:
        with self._lock:
            self._deliveries.append(delivery)
            if self._log_file is not None:
                self._log_file.write(json.dumps(delivery) + "\n")
                self._log_file.flush()
        log.info(
            "delivery %s %s → %s%s",
            delivery["route"],
            delivery["message_id"],
            delivery["status"],
            f" ({delivery['error']})" if delivery["error"] else "",
        )


def _handler_for(shim: EventarcShim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "warden-eventarc-shim"

        def _answer(self, status: int, payload: Any = None) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(HTTPStatus.OK, {"status": "ok"})
            elif self.path == "/deliveries":
                self._answer(HTTPStatus.OK, shim.deliveries)
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def do_POST(self) -> None:
            prefix = "/push/"
            name = self.path[len(prefix) :].split("?", 1)[0] if self.path.startswith(prefix) else ""
            route = shim.routes.get(name)
            if route is None:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"no route {name!r}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= _MAX_BODY:
                    raise PushError(f"bad Content-Length {length}")
                push = json.loads(self.rfile.read(length))
                status = shim.deliver(route, push)
            except (PushError, ValueError) as exc:  # JSONDecodeError is a ValueError
                log.warning("malformed push to %s: %s", name, exc)
                self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            self._answer(status)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


# -- Pub/Sub wiring ------------------------------------------------------------------------------


def ensure_topic(publisher: Any, project: str, topic_id: str) -> str:
    """Create ``projects/{project}/topics/{topic_id}`` unless it exists; return its path."""
    from google.api_core.exceptions import AlreadyExists

    path = publisher.topic_path(project, topic_id)
    with contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=path)
    return str(path)


def create_push_subscription(
    subscriber: Any,
    *,
    project: str,
    topic_id: str,
    subscription_id: str,
    push_endpoint: str,
    ack_deadline: int = 10,
) -> str:
    """Create a push subscription (Eventarc's retry policy: 1-10 s backoff); return its path.

    Idempotent: if it exists, its push endpoint is pointed at ``push_endpoint`` (a restarted
    shim usually listens on a new port).
    """
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    path = subscriber.subscription_path(project, subscription_id)
    push_config = pubsub_v1.types.PushConfig(push_endpoint=push_endpoint)
    try:
        subscriber.create_subscription(
            request={
                "name": path,
                "topic": f"projects/{project}/topics/{topic_id}",
                "push_config": push_config,
                "ack_deadline_seconds": ack_deadline,
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=1),
                    "maximum_backoff": duration_pb2.Duration(seconds=10),
                },
            }
        )
    except AlreadyExists:
        subscriber.modify_push_config(request={"subscription": path, "push_config": push_config})
    return str(path)


def subscribe_routes(shim: EventarcShim) -> list[str]:
    """Topics plus one push subscription ``eventarc-{route}`` per route; needs the emulator."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    paths = []
    try:
        for route in shim.routes.values():
            match = _TOPIC.match(route.topic)
            assert match is not None  # Route validated it
            project, topic_id = match.groups()
            ensure_topic(publisher, project, topic_id)
            paths.append(
                create_push_subscription(
                    subscriber,
                    project=project,
                    topic_id=topic_id,
                    subscription_id=f"eventarc-{route.name}",
                    push_endpoint=shim.push_url(route.name),
                )
            )
    finally:
        subscriber.close()
    return paths


# -- CLI -----------------------------------------------------------------------------------------


def load_routes(path: Path) -> list[Route]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError(f"{path}: routes must be a JSON list of {{name, target_url, topic}}")
    return [Route(name=r["name"], target_url=r["target_url"], topic=r["topic"]) for r in raw]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warden_local.eventarc", description="Eventarc stand-in for Pub/Sub."
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--routes", type=Path, required=True, help="JSON list of routes")
    parser.add_argument("--log", type=Path, default=None, help="JSON-lines file of deliveries")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-delivery timeout (s)")
    parser.add_argument(
        "--subscribe",
        action="store_true",
        help="create topics and push subscriptions in the emulator at PUBSUB_EMULATOR_HOST",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    shim = EventarcShim(
        load_routes(args.routes), port=args.port or None, log=args.log, timeout=args.timeout
    )
    with shim:
        if args.subscribe:
            subscribe_routes(shim)
        print(f"ready {shim.endpoint}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
