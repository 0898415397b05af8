"""Publishing ``model-events`` on Pub/Sub.

Payload: ``{"schema": 1, "kind": ..., "model": ..., "at": ..., ...}``; attributes ``model`` and
``kind`` so subscriptions can filter without decoding. With no topic configured, events are only
logged (still one structured line each, so nothing is silently dropped).

What each kind adds (the router turns every event into an alert, ``warden.alerts.inputs``):

* ``failed`` (a run's permanent error; retrain, monitor, housekeeping): ``job``, ``run_id`` and
  ``error``, the error text (at most :data:`ERROR_MAX` characters; the alert's summary shows
  its first 500).
* ``promoted`` / ``rolled_back``: ``version``, ``previous_version``; from the CLI also
  ``actor`` (the operator), ``reason`` and, for a promote past a failed gate, ``forced``.
* ``version_registered``, ``rejected``, ``drift_detected``, ``performance_degraded``,
  ``integrity_failed``: see the jobs that publish them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from warden.logs import fields

log = logging.getLogger(__name__)

KINDS = (
    "version_registered",
    "promoted",
    "rejected",
    "failed",
    "rolled_back",
    "drift_detected",
    "performance_degraded",
    "integrity_failed",
)
SCHEMA = 1
#: The longest error text a ``failed`` event carries (the run marker keeps as much).
ERROR_MAX = 2000


class EventPublisher:
    def __init__(
        self,
        publisher_factory: Callable[[], Any] | None,
        project: str,
        topic: str,
        *,
        timeout: float = 30.0,
    ) -> None:
        self._factory = publisher_factory
        self._publisher: Any = None
        self.project = project
        self.topic = topic
        self.timeout = timeout

    def publish(self, kind: str, model: str, **payload: Any) -> str | None:
        """Publish one event; return its message id (None when only logged)."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        if kind == "failed":  # the error text is what the page shows: always there, bounded
            payload["error"] = str(payload.get("error") or "no error text given")[:ERROR_MAX]
        body = {
            "schema": SCHEMA,
            "kind": kind,
            "model": model,
            "at": datetime.now(UTC).isoformat(),
            **payload,
        }
        log.info("model event %s", kind, extra=fields(event=body))
        if not self.topic or self._factory is None:
            return None
        if self._publisher is None:
            self._publisher = self._factory()
        path = self._publisher.topic_path(self.project, self.topic)
        data = json.dumps(body, sort_keys=True, default=str).encode()
        future = self._publisher.publish(path, data, model=model, kind=kind)
        return str(future.result(timeout=self.timeout))

    def try_publish(self, kind: str, model: str, **payload: Any) -> None:
        """Publish, logging instead of raising: callers publish after their outcome is stored,
        and a lost event must not make Pub/Sub redo the work."""
        try:
            self.publish(kind, model, **payload)
        except Exception:
            log.exception("could not publish %s event", kind, extra=fields(model=model))
