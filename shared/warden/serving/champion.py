"""The champion in a serving process: loaded verified, swapped when the alias moves, never torn.

::

    champion = Champion.from_env("breast-cancer-risk", check_interval=30)
    champion.load()                       # at startup: the champion, sha256 checked
    ...
    loaded = champion.current()           # per request: no I/O, one consistent version
    scores = loaded.estimator.predict_proba(X)[:, 1]
    champion.served(len(X))
    ...
    health = champion.status()            # version, loaded_at, predictions, last swap, errors

How a swap happens. A request that finds ``check_interval`` seconds passed since the last check
starts one background check and goes on with the version it has. The check reads the alias
object's generation (one metadata request); only when it moved does it read the alias, then the
new version's manifest and artifact, check the artifact's sha256 against the manifest, unpickle
it, and replace the reference requests read. A request holds the :class:`Loaded` it got, so it
answers from one fully loaded version whatever happens meanwhile. A version that fails (missing,
sha256 mismatch, unpickling error, storage unreachable) is not served: the last good one stays,
:meth:`Champion.status` says why, and the check retries it with a doubling delay (at most
10 minutes) or at once when the alias moves again.

With ``cache_dir`` each verified artifact is also kept on local disk (with its manifest): a
restart re-uses it instead of downloading it again (its sha256 checked again), and if the
registry cannot be reached at startup the newest cached version is served (status says so).
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warden.errors import IntegrityError, VersionNotFound
from warden.store.registry import ARTIFACT, Registry, sha256_hex

log = logging.getLogger(__name__)

#: Seconds between two checks of the alias by default.
DEFAULT_CHECK_INTERVAL = 30.0
#: Longest wait before a version that failed to load is tried again (unless the alias moves).
MAX_RETRY_DELAY = 600.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Loaded:
    """One fully loaded version: what a request uses from start to end."""

    model: str
    version: int
    estimator: Any
    manifest: Mapping[str, Any]
    loaded_at: datetime
    #: Where the artifact's bytes came from: ``registry`` or ``cache`` (the local file cache).
    source: str


class Champion:
    """A model's champion (or a pinned version) for a serving process.

    ``registry``: the :class:`~warden.store.registry.Registry` to read (see :meth:`from_env`).
    ``version``: serve this version and never swap. ``check_interval``: seconds between checks
    of the alias. ``cache_dir``: keep verified artifacts there. ``clock`` (monotonic seconds)
    and ``now`` (UTC datetimes) are injectable for tests.
    """

    def __init__(
        self,
        model: str,
        registry: Registry,
        *,
        version: int | None = None,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        cache_dir: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not check_interval > 0:
            raise ValueError(f"check_interval must be positive, got {check_interval!r}")
        if version is not None and (type(version) is not int or version < 1):
            raise ValueError(f"version must be a positive integer, got {version!r}")
        self.model = model
        self.registry = registry
        self.pinned = version
        self.check_interval = float(check_interval)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._clock = clock
        self._now = now
        self._loaded: Loaded | None = None
        self._load_lock = threading.Lock()  # one load or check at a time
        self._lock = threading.Lock()  # counters and check scheduling
        self._checking = False
        self._next_check = 0.0
        self._alias_generation = 0
        self._predictions = 0
        self._checks = 0
        self._last_check_at: datetime | None = None
        self._last_swap: dict[str, Any] | None = None
        self._last_error: dict[str, Any] | None = None
        self._failing: tuple[int, int] | None = None  # (version, attempts) not served
        self._retry_at = 0.0

    @classmethod
    def from_env(
        cls, model: str, *, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Champion:
        """A champion read from the registry bucket the environment names
        (``WARDEN_REGISTRY_BUCKET``; ``STORAGE_EMULATOR_HOST`` locally), as the functions do."""
        from warden.clients import Clients
        from warden.settings import Settings

        settings = Settings.from_env(environ)
        registry = Registry(Clients(settings).storage, settings.registry_bucket)
        kwargs.setdefault("now", settings.now)  # the local stack's virtual clock, if it has one
        return cls(model, registry, **kwargs)

    # -- the request path -------------------------------------------------------------------------
    def current(self) -> Loaded:
        """The version to answer this request with. No I/O once loaded (the first call loads,
        see :meth:`load`); may start a background check of the alias."""
        loaded = self._loaded
        if loaded is None:
            loaded = self.load()
        if self.pinned is None and self._clock() >= self._next_check:
            self._start_check()
        return loaded

    def served(self, rows: int = 1) -> None:
        """Count ``rows`` predictions served (for :meth:`status`)."""
        with self._lock:
            self._predictions += rows

    def predict(self, X: Any) -> Any:
        """``predict`` of the current version, counted."""
        out = self.current().estimator.predict(X)
        self.served(len(out))
        return out

    def predict_proba(self, X: Any) -> Any:
        """``predict_proba`` of the current version, counted."""
        out = self.current().estimator.predict_proba(X)
        self.served(len(out))
        return out

    # -- loading and checking ----------------------------------------------------------------------
    def load(self) -> Loaded:
        """Load the champion (or the pinned version) now, if nothing is loaded yet; raise if
        neither the registry nor the cache has a verified version to serve."""
        with self._load_lock:
            if self._loaded is not None:
                return self._loaded
            try:
                generation = 0 if self.pinned else self.registry.alias_generation(self.model)
                version, generation, previous = self._target(generation)
            except VersionNotFound:
                raise
            except Exception as exc:
                loaded_from_cache = self._newest_cached()
                if loaded_from_cache is None:
                    raise
                self._error(f"registry unavailable at startup, serving the cache: {exc}")
                loaded, generation = loaded_from_cache, 0
            else:
                try:
                    loaded = self._fetch(version)
                except Exception as exc:
                    loaded = self._instead_of(version, previous, exc)
            self._loaded = loaded
            self._alias_generation = generation
            self._next_check = self._clock() + self.check_interval
            log.info(
                "champion loaded",
                extra={"json_fields": {"model": self.model, "version": loaded.version}},
            )
            return loaded

    def _instead_of(self, version: int, previous: int | None, exc: Exception) -> Loaded:
        """At startup the champion cannot be served (corrupt, missing, unpicklable): serve the
        champion before it, as the instances already running do, or else the newest verified
        cached version; retry the champion like a failed swap. Raise ``exc`` if neither."""
        candidates: list[Callable[[], Loaded | None]] = []
        if previous is not None and self.pinned is None:
            candidates.append(lambda: self._fetch(previous))
        candidates.append(self._newest_cached)
        for attempt in candidates:
            try:
                fallback = attempt()
            except Exception:  # the previous one is gone too: try the next way
                log.warning("fallback for %s v%s failed", self.model, version, exc_info=True)
                continue
            if fallback is None or fallback.version == version:
                continue
            self._failing = (version, 1)
            self._retry_at = self._clock() + self.check_interval
            self._error(
                f"v{version} not loaded at startup, serving v{fallback.version} "
                f"({fallback.source}): {exc}"
            )
            log.error(
                "champion v%s failed to load at startup; serving v%s",
                version,
                fallback.version,
                extra={"json_fields": {"model": self.model, "version": version}},
            )
            return fallback
        raise exc

    def refresh(self) -> bool:
        """Check the alias now, in this thread; True if a new version is being served."""
        if self._loaded is None:
            self.load()
            return True
        with self._lock:
            self._next_check = self._clock() + self.check_interval
        return self._check()

    def _start_check(self) -> None:
        with self._lock:
            if self._checking or self._clock() < self._next_check:
                return
            self._checking = True
            self._next_check = self._clock() + self.check_interval
        thread = threading.Thread(
            target=self._check_in_background, name=f"warden-champion-{self.model}", daemon=True
        )
        thread.start()

    def _check_in_background(self) -> None:
        try:
            self._check()
        finally:
            with self._lock:
                self._checking = False

    def _check(self) -> bool:
        with self._load_lock:
            try:
                return self._check_locked()
            except Exception as exc:  # storage unreachable, say: serve on, report, retry later
                self._error(f"checking the champion failed: {exc}")
                log.warning(
                    "champion check failed; serving v%s",
                    self._loaded.version if self._loaded else None,
                    exc_info=True,
                )
                return False

    def _check_locked(self) -> bool:
        with self._lock:
            self._checks += 1
            self._last_check_at = self._now()
        if self.pinned is not None:
            return False
        generation = self.registry.alias_generation(self.model)
        retry_due = self._failing is not None and self._clock() >= self._retry_at
        if generation == self._alias_generation and not retry_due:
            return False  # the alias has not moved: the one request this check costs
        version, generation, _ = self._target(generation)
        current = self._loaded
        if current is not None and version == current.version:
            self._alias_generation, self._failing = generation, None
            return False
        failing = self._failing
        same_failure = failing and failing[0] == version and generation == self._alias_generation
        if same_failure and not retry_due:
            return False  # it failed at this very alias state: wait for its retry delay
        try:
            new = self._fetch(version)
        except Exception as exc:
            attempts = failing[1] + 1 if failing and failing[0] == version else 1
            self._failing = (version, attempts)
            delay = min(self.check_interval * 2 ** (attempts - 1), MAX_RETRY_DELAY)
            self._retry_at = self._clock() + delay
            self._alias_generation = generation
            served = current.version if current else None
            self._error(f"v{version} not loaded, still serving v{served}: {exc}")
            log.error(
                "new champion v%s failed to load; still serving v%s",
                version,
                served,
                extra={"json_fields": {"model": self.model, "version": version}},
                exc_info=True,
            )
            return False
        self._loaded = new
        self._alias_generation, self._failing = generation, None
        with self._lock:
            self._last_swap = {
                "from": current.version if current else None,
                "to": new.version,
                "at": _iso(new.loaded_at),
            }
        log.info(
            "champion swapped",
            extra={
                "json_fields": {
                    "model": self.model,
                    "from": current.version if current else None,
                    "version": new.version,
                }
            },
        )
        return True

    def _target(self, generation: int) -> tuple[int, int, int | None]:
        """(version to serve, the alias generation it was read at, the champion before it)."""
        if self.pinned is not None:
            return self.pinned, 0, None
        state = self.registry.alias(self.model)
        if state is None:
            raise VersionNotFound(f"{self.model}: no champion yet")
        return state.version, state.generation or generation, state.previous_version

    def _fetch(self, version: int) -> Loaded:
        """Version ``version`` loaded: from the cache if its bytes match the manifest's sha256,
        else downloaded and checked (then cached)."""
        manifest = self.registry.manifest(self.model, version)
        files = manifest.get("files")
        record = files.get(ARTIFACT) if isinstance(files, Mapping) else None
        if not isinstance(record, Mapping) or not record.get("sha256"):
            raise IntegrityError(f"{self.model} v{version}: no sha256 for {ARTIFACT}")
        data = self._cached_bytes(version, str(record["sha256"]))
        source = "cache"
        if data is None:
            data = self.registry.read_file(self.model, version, ARTIFACT, manifest)
            source = "registry"
            self._write_cache(version, data, manifest)
        return Loaded(self.model, version, _unpickle(data), manifest, self._now(), source)

    # -- the local file cache ---------------------------------------------------------------------
    def _cache_paths(self, version: int) -> tuple[Path, Path]:
        assert self.cache_dir is not None
        folder = self.cache_dir / self.model
        return folder / f"v{version:06d}.joblib", folder / f"v{version:06d}.manifest.json"

    def _cached_bytes(self, version: int, sha256: str) -> bytes | None:
        if self.cache_dir is None:
            return None
        artifact, _ = self._cache_paths(version)
        try:
            data = artifact.read_bytes()
        except OSError:
            return None
        return data if sha256_hex(data) == sha256 else None

    def _write_cache(self, version: int, data: bytes, manifest: Mapping[str, Any]) -> None:
        if self.cache_dir is None:
            return
        artifact, meta = self._cache_paths(version)
        try:
            artifact.parent.mkdir(parents=True, exist_ok=True)
            for path, content in ((artifact, data), (meta, json.dumps(manifest).encode())):
                tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(content)
                os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk costs the cache, not the request
            log.warning("champion cache not written: %s", exc)

    def _newest_cached(self) -> Loaded | None:
        """The newest cached version whose bytes match its cached manifest (registry down)."""
        if self.cache_dir is None:
            return None
        folder = self.cache_dir / self.model
        versions = sorted(
            (int(p.name[1:7]) for p in folder.glob("v??????.manifest.json")), reverse=True
        )
        if self.pinned is not None:
            versions = [v for v in versions if v == self.pinned]
        for version in versions:
            _, meta = self._cache_paths(version)
            try:
                manifest = json.loads(meta.read_text())
                sha = str(manifest["files"][ARTIFACT]["sha256"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            data = self._cached_bytes(version, sha)
            if data is not None:
                return Loaded(self.model, version, _unpickle(data), manifest, self._now(), "cache")
        return None

    # -- health ---------------------------------------------------------------------------------
    def _error(self, message: str) -> None:
        with self._lock:
            self._last_error = {"at": _iso(self._now()), "message": message}

    def status(self) -> dict[str, Any]:
        """What a health endpoint shows: ``model_loaded``, ``version``, ``loaded_at``,
        ``source``, ``predictions``, ``last_swap``, ``last_check_at``, ``checks``,
        ``last_error`` and ``failing_version`` (a newer champion not served, and why in
        ``last_error``)."""
        loaded = self._loaded
        with self._lock:
            return {
                "model": self.model,
                "model_loaded": loaded is not None,
                "version": loaded.version if loaded else None,
                "loaded_at": _iso(loaded.loaded_at) if loaded else None,
                "source": loaded.source if loaded else None,
                "pinned": self.pinned is not None,
                "predictions": self._predictions,
                "checks": self._checks,
                "check_interval_s": self.check_interval,
                "last_check_at": _iso(self._last_check_at),
                "last_swap": dict(self._last_swap) if self._last_swap else None,
                "last_error": dict(self._last_error) if self._last_error else None,
                "failing_version": self._failing[0] if self._failing else None,
            }


def _unpickle(data: bytes) -> Any:
    """Unpickle artifact bytes already checked against their manifest's sha256."""
    import joblib  # (and, through the pickle, scikit-learn) only now

    return joblib.load(io.BytesIO(data))
