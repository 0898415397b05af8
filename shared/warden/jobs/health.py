"""Use case: is every model's champion present, intact (and loadable), and are its scheduled
jobs running?

* ``unhealthy`` (HTTP 503): the registry is unreachable, the config is broken, or a champion
  does not verify or, with ``deep``, does not load.
* Verifying a champion costs the same whatever its size: one metadata read of its artifact,
  whose generation, size, crc32c and md5 must be the manifest's
  (:meth:`~warden.store.registry.Registry.check_stored`; a manifest from before those were
  recorded, or the same bytes at a new generation after a restore, fall back to the full sha256).
  ``deep`` also loads each champion, which downloads it and checks its sha256 first; the sha256
  of every file of every version is housekeeping's daily sweep.
* ``degraded`` (200, or 503 with ``fail_on=stale``): no champion yet, or a scheduled job is
  stale — its last success is older than twice its schedule's period (a paused job, a broken
  trigger, a job that keeps failing). The uptime check asks with ``fail_on=stale``.

Imports neither scikit-learn nor pandas unless ``deep`` asks to load the champions.
"""

from __future__ import annotations

import logging
import platform
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import cache
from importlib import metadata
from itertools import pairwise
from typing import Any

from warden import __version__
from warden.errors import IntegrityError, VersionNotFound, WardenError
from warden.logs import fields
from warden.runtime import Runtime

log = logging.getLogger(__name__)

#: Jobs whose staleness health checks (housekeeping too, where scheduled).
JOBS = ("retrain", "monitor", "housekeeping")
#: Distributions whose versions health reports (those a bundle lacks are left out).
PACKAGES = (
    "functions-framework",
    "google-cloud-storage",
    "google-cloud-pubsub",
    "google-cloud-monitoring",
    "pydantic",
    "scikit-learn",
    "joblib",
    "numpy",
    "pandas",
    "pyarrow",
)


@cache
def dependency_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@cache
def schedule_period(cron: str, timezone: str) -> timedelta:
    """The longest gap between consecutive fires over the next few weeks (a cron like
    "0 3 * * 1-5" has a 3-day gap over the weekend: staleness must allow for it)."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    start = datetime(2026, 1, 5, tzinfo=ZoneInfo(timezone))  # a Monday; DST changes follow
    it = croniter(cron, start)
    fires = [it.get_next(datetime) for _ in range(64)]
    gaps = [b - a for a, b in pairwise(fires)]
    horizon = fires[-1] - fires[0]
    if horizon < timedelta(days=35):  # frequent schedules: 64 fires may not span a week
        it = croniter(cron, fires[-1])
        while fires[-1] - fires[0] < timedelta(days=35) and len(fires) < 50_000:
            fires.append(it.get_next(datetime))
            gaps.append(fires[-1] - fires[-2])
    return max(gaps)


def _age_seconds(iso: str | None, now: datetime) -> float | None:
    if not iso:
        return None
    ts = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return round((now - ts).total_seconds(), 1)


def _job_health(rt: Runtime, name: str, job: str, now: datetime) -> dict[str, Any] | None:
    schedule = getattr(rt.config.model(name).schedules, job, None)
    if schedule is None:
        return None
    status = rt.ledger().status(name, job) or {}
    last_success = (status.get("last_success") or {}).get("at")
    limit = 2 * schedule_period(schedule.cron, schedule.timezone)
    age = _age_seconds(last_success, now)
    return {
        "last_success_at": last_success,
        "seconds_since_last_success": age,
        "last_outcome": (status.get("last_run") or {}).get("outcome"),
        "stale_after_seconds": limit.total_seconds(),
        # Never succeeded: not stale (nothing to compare with); "no champion yet" says enough.
        "stale": age is not None and age > limit.total_seconds(),
    }


def _model_health(rt: Runtime, name: str, *, deep: bool, now: datetime) -> dict[str, Any]:
    registry = rt.registry()
    out: dict[str, Any] = {"model": name, "status": "ok"}
    jobs = {job: h for job in JOBS if (h := _job_health(rt, name, job, now)) is not None}
    out["jobs"] = jobs
    retrain = jobs.get("retrain") or {}
    out["last_retrain_success_at"] = retrain.get("last_success_at")
    out["seconds_since_last_retrain"] = retrain.get("seconds_since_last_success")
    out["last_retrain_outcome"] = retrain.get("last_outcome")
    stale = sorted(job for job, h in jobs.items() if h["stale"])
    if stale:
        out.update(status="degraded", stale=stale, detail=f"stale: {', '.join(stale)}")
    champion = registry.alias(name)
    if champion is None:
        out.update(status="degraded", champion=None, detail="no champion yet")
        return out
    out["champion"] = {
        "version": champion.version,
        "since": champion.changed_at,
        "action": champion.action,
    }
    try:
        check = registry.check_stored(name, champion.version)
    except VersionNotFound as exc:
        out.update(status="unhealthy", verified=False, detail=str(exc))
        return out
    out["verified"] = check.ok
    if not check.ok:
        out.update(status="unhealthy", detail=check.detail)
        return out
    # "sha256" when the artifact was downloaded and hashed (an older manifest, a restored file).
    out["verified_by"] = "metadata" if check.sha256 is None else "sha256"
    if deep:
        try:
            registry.load(name, champion.version)  # downloads and checks the sha256 first
            out.update(loaded=True, verified_by="sha256")
        except (IntegrityError, WardenError) as exc:
            out.update(status="unhealthy", loaded=False, detail=str(exc))
        except Exception as exc:  # unpickling can fail in many ways (version skew, ...)
            out.update(
                status="unhealthy", loaded=False, detail=f"load failed: {type(exc).__name__}: {exc}"
            )
    return out


def check_health(
    rt: Runtime, *, deep: bool = False, fail_on_stale: bool = False
) -> tuple[int, dict[str, Any]]:
    """Return (HTTP status, JSON body). 503 when something is broken — and, with
    ``fail_on_stale``, when a scheduled job is stale — never because a model is merely new."""
    now = rt.clock()
    body: dict[str, Any] = {
        "status": "ok",
        "checked_at": now.isoformat(),
        "deep": deep,
        "code_version": rt.settings.code_version,
        "warden": __version__,
        "versions": dependency_versions(),
    }
    try:
        names = sorted(rt.config.models)
    except WardenError as exc:
        body.update(status="unhealthy", detail=str(exc))
        return 503, body
    try:
        rt.registry().ping()
        with ThreadPoolExecutor(max_workers=min(8, len(names) or 1)) as pool:
            models = list(pool.map(lambda n: _model_health(rt, n, deep=deep, now=now), names))
    except Exception as exc:  # registry unreachable, permissions, ...
        log.exception("health: registry check failed")
        body.update(
            status="unhealthy", detail=f"registry check failed: {type(exc).__name__}: {exc}"[:500]
        )
        return 503, body
    body["models"] = {m.pop("model"): m for m in models}
    states = {m["status"] for m in body["models"].values()}
    body["status"] = (
        "unhealthy" if "unhealthy" in states else "degraded" if "degraded" in states else "ok"
    )
    body["stale"] = sorted(
        f"{name}/{job}" for name, m in body["models"].items() for job in m.get("stale", [])
    )
    if body["status"] != "ok":
        log.warning("health %s", body["status"], extra=fields(models=body["models"]))
    failing = body["status"] == "unhealthy" or (fail_on_stale and body["stale"])
    return (503 if failing else 200), body
