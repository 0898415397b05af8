"""Per-process wiring: settings, config and clients, built once and replaceable in tests.

Function entry points call :func:`current`; tests and the local stack call :func:`install`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warden.clients import Clients
from warden.config import WardenConfig, load_config
from warden.settings import Settings


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    clients: Clients
    _config: WardenConfig | None = None
    _cache: dict[str, Any] = field(default_factory=dict)
    #: "Now" for leases, retention windows and staleness (tests move it; nothing else does).
    clock: Callable[[], datetime] = _utcnow

    @property
    def config(self) -> WardenConfig:
        if self._config is None:
            self._config = load_config(self.settings.config_path)
        return self._config

    @property
    def alerting(self):  # -> warden.alerts.AlertingConfig | None
        if "alerting" not in self._cache:
            from warden.config.alerting import parse_alerting

            raw = self.config.alerting
            self._cache["alerting"] = (
                None if raw is None else parse_alerting(raw, str(self.settings.config_path))
            )
        return self._cache["alerting"]

    def alert_state(self):  # -> warden.alerts.state.AlertState
        """The router's state, in its own bucket: the routers may not write the registry."""
        from warden.alerts.state import AlertState

        if "alert_state" not in self._cache:
            self._cache["alert_state"] = AlertState(
                self.clients.storage, self.settings.alert_state_bucket
            )
        return self._cache["alert_state"]

    def registry(self):  # -> warden.store.registry.Registry
        from warden.store.registry import Registry

        if "registry" not in self._cache:
            self._cache["registry"] = Registry(
                self.clients.storage, self.settings.registry_bucket, clock=lambda: self.clock()
            )
        return self._cache["registry"]

    def ledger(self):  # -> warden.store.runs.RunLedger
        from warden.store.runs import RunLedger

        if "ledger" not in self._cache:
            self._cache["ledger"] = RunLedger(
                self.clients.storage, self.settings.registry_bucket, clock=lambda: self.clock()
            )
        return self._cache["ledger"]

    def metrics(self):  # -> warden.telemetry.metrics.MetricsWriter
        from warden.telemetry.metrics import from_clients

        if "metrics" not in self._cache:
            self._cache["metrics"] = from_clients(self.clients)
        return self._cache["metrics"]

    def events(self):  # -> warden.telemetry.events.EventPublisher
        from warden.telemetry.events import EventPublisher

        if "events" not in self._cache:
            s = self.settings
            self._cache["events"] = EventPublisher(
                (lambda: self.clients.publisher) if s.events_topic else None,
                s.project,
                s.events_topic,
            )
        return self._cache["events"]


_lock = threading.Lock()
_current: Runtime | None = None


def build(
    settings: Settings | None = None, *, config: WardenConfig | None = None, **clients: Any
) -> Runtime:
    settings = settings or Settings.from_env()
    runtime = Runtime(settings=settings, clients=Clients(settings, **clients), _config=config)
    if settings.local_clock is not None:
        runtime.clock = settings.now
    return runtime


def current(default_config: Path | None = None) -> Runtime:
    """The installed runtime, or one built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            from warden.logs import setup_logging

            settings = Settings.from_env(default_config=default_config)
            setup_logging(project=settings.project, level=settings.log_level)
            _current = build(settings)
        return _current


def install(runtime: Runtime | None) -> None:
    """Replace the process's runtime (None: rebuild from the environment on next use)."""
    global _current
    with _lock:
        _current = runtime
