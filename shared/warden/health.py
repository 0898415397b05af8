"""Use case: is every model's champion present, intact (and loadable), and recently retrained?

Imports neither scikit-learn nor pandas unless ``deep`` asks to load the champions.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from warden import __version__
from warden.errors import IntegrityError, VersionNotFound, WardenError
from warden.logs import fields
from warden.runtime import Runtime

log = logging.getLogger(__name__)


def _age_seconds(iso: str | None, now: datetime) -> float | None:
    if not iso:
        return None
    ts = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return round((now - ts).total_seconds(), 1)


def _model_health(rt: Runtime, name: str, *, deep: bool, now: datetime) -> dict[str, Any]:
    registry = rt.registry()
    out: dict[str, Any] = {"model": name, "status": "ok"}
    status = rt.ledger().status(name, "retrain") or {}
    last_success = (status.get("last_success") or {}).get("at")
    out["last_retrain_success_at"] = last_success
    out["seconds_since_last_retrain"] = _age_seconds(last_success, now)
    last_run = status.get("last_run") or {}
    out["last_retrain_outcome"] = last_run.get("outcome")
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
        check = registry.verify(name, champion.version)
    except VersionNotFound as exc:
        out.update(status="unhealthy", verified=False, detail=str(exc))
        return out
    out["verified"] = check.ok
    if not check.ok:
        out.update(status="unhealthy", detail=check.detail)
        return out
    if deep:
        try:
            registry.load(name, champion.version)
            out["loaded"] = True
        except (IntegrityError, WardenError) as exc:
            out.update(status="unhealthy", loaded=False, detail=str(exc))
        except Exception as exc:  # unpickling can fail in many ways (version skew, ...)
            out.update(
                status="unhealthy", loaded=False, detail=f"load failed: {type(exc).__name__}: {exc}"
            )
    return out


def check_health(rt: Runtime, *, deep: bool = False) -> tuple[int, dict[str, Any]]:
    """Return (HTTP status, JSON body). 503 only when something is broken, not merely new."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "status": "ok",
        "checked_at": now.isoformat(),
        "deep": deep,
        "code_version": rt.settings.code_version,
        "warden": __version__,
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
    if body["status"] != "ok":
        log.warning("health %s", body["status"], extra=fields(models=body["models"]))
    return (503 if body["status"] == "unhealthy" else 200), body
