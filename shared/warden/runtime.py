"""Per-process wiring: settings, config and clients, built once and replaceable in tests.

Function entry points call :func:`current`; tests and the local stack call :func:`install`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warden.clients import Clients
from warden.config import WardenConfig, load_config
from warden.settings import Settings

if TYPE_CHECKING:
    # For annotations only: the runtime imports each where it first builds one.
    from warden.alerts.state import AlertState
    from warden.config.alerting import AlertingConfig
    from warden.store.registry import Registry
    from warden.store.runs import RunLedger
    from warden.telemetry.events import EventPublisher
    from warden.telemetry.metrics import MetricsWriter


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    clients: Clients
    _config: WardenConfig | None = None
    #: "Now" for leases, retention windows and staleness (tests move it; nothing else does).
    clock: Callable[[], datetime] = _utcnow
    # Built on first use by the members below, each importing its module only then, so that a
    # cold start loads what its function uses. The alerting section is kept with the config it
    # was parsed from: a config replaced (as tests do) is parsed afresh.
    _alerting: tuple[WardenConfig, AlertingConfig | None] | None = field(
        default=None, init=False, repr=False
    )
    _alert_state: AlertState | None = field(default=None, init=False, repr=False)
    _registry: Registry | None = field(default=None, init=False, repr=False)
    _ledger: RunLedger | None = field(default=None, init=False, repr=False)
    _metrics: MetricsWriter | None = field(default=None, init=False, repr=False)
    _events: EventPublisher | None = field(default=None, init=False, repr=False)

    @property
    def config(self) -> WardenConfig:
        if self._config is None:
            self._config = load_config(self.settings.config_path)
        return self._config

    @property
    def alerting(self) -> AlertingConfig | None:
        """The config's ``alerting`` section, validated; None when it has none."""
        config = self.config
        if self._alerting is None or self._alerting[0] is not config:
            from warden.config.alerting import parse_alerting

            raw = config.alerting
            parsed = None if raw is None else parse_alerting(raw, str(self.settings.config_path))
            self._alerting = (config, parsed)
        return self._alerting[1]

    def alert_state(self) -> AlertState:
        """The router's state, in its own bucket: the routers may not write the registry."""
        if self._alert_state is None:
            from warden.alerts.state import AlertState

            self._alert_state = AlertState(self.clients.storage, self.settings.alert_state_bucket)
        return self._alert_state

    def registry(self) -> Registry:
        if self._registry is None:
            from warden.store.registry import Registry

            self._registry = Registry(
                self.clients.storage, self.settings.registry_bucket, clock=lambda: self.clock()
            )
        return self._registry

    def ledger(self) -> RunLedger:
        if self._ledger is None:
            from warden.store.runs import RunLedger

            self._ledger = RunLedger(
                self.clients.storage, self.settings.registry_bucket, clock=lambda: self.clock()
            )
        return self._ledger

    def metrics(self) -> MetricsWriter:
        if self._metrics is None:
            from warden.telemetry.metrics import from_clients

            self._metrics = from_clients(self.clients)
        return self._metrics

    def events(self) -> EventPublisher:
        if self._events is None:
            from warden.telemetry.events import EventPublisher

            s = self.settings
            self._events = EventPublisher(
                (lambda: self.clients.publisher) if s.events_topic else None,
                s.project,
                s.events_topic,
            )
        return self._events


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
