"""Use case: housekeeping of one model's registry — check, back up, retire, sweep, expire.

Run per model by its ``housekeeping`` schedule (or ``run_housekeeping`` from the CLI), under the
run ledger like retrain and monitor (kind ``housekeeping``: a redelivery stops at the marker).
The steps, in order, each reported in :class:`HousekeepingOutcome`:

1. **integrity** — every file listed in every manifest is streamed and its sha256 compared
   (nothing is unpickled). A missing or changed file publishes ``integrity_failed`` (a critical
   alert) and sets ``housekeeping/integrity_failures``. A corrupt version is never repaired and
   never retired: it stays for forensics until an operator deals with it.
2. **backup** — with ``housekeeping.backup``, a snapshot of the model (``warden.jobs.backup``), then
   snapshots older than ``backup_retention_days`` are pruned. It runs before anything is
   deleted, and a failed backup stops the run, so nothing is deleted without a fresh snapshot.
3. **retention** — :func:`retention_plan` (pure) decides; a retired version loses its manifest
   first (it vanishes at once for every reader), then its files. ``claim.json`` always stays:
   ``claim_version`` counts folders, so deleting claims could hand a number out again.
4. **orphans** — folders with files but no manifest (a retrain killed between claim and
   manifest) whose newest object is older than ``orphan_grace_hours`` lose their files; the
   claim stays. Younger ones may still be being written and are left alone.
5. **expiry** — finished run-ledger markers older than ``marker_ttl_days`` (``status/`` stays),
   the shard folders of sharded monitor runs older than that (``warden.jobs.shards``), and the
   router's state past :data:`ROUTER_STATE_TTL` (global; every model's run sweeps it,
   which is idempotent and cheap).
6. **heartbeat** — ``housekeeping/heartbeat`` = 1 and ``housekeeping/deleted_versions``.

``dry_run`` changes nothing anywhere: no ledger marker, no snapshot, no deletion, no event, no
metric; the outcome lists what a real run would do.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from warden.config import ModelConfig
from warden.errors import IntegrityError, PermanentError, VersionNotFound
from warden.jobs.messages import RunRequest
from warden.logs import fields
from warden.runtime import Runtime
from warden.store.registry import CLAIM, MANIFEST, StoredObject
from warden.store.runs import Finished, PriorRun, run_once

log = logging.getLogger(__name__)

JOB = "housekeeping"
#: Router state (``_alerting/``) older than this goes: resolved groups, ended silences, nflog.
ROUTER_STATE_TTL = timedelta(days=7)

#: Why a version is kept, strongest first; a version is listed once, under the first that holds.
KEEP_CHAMPION = "champion"
KEEP_CORRUPT = "corrupt"
KEEP_NEWEST = "newest"
KEEP_ALIAS_WINDOW = "alias_window"


# -- the pure part --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPlan:
    keep: dict[int, str]  # version → why (one reason each)
    delete: list[int]  # oldest first


def retention_plan(
    versions: Iterable[int],
    champion: int | None,
    alias_history: Sequence[tuple[int, datetime]],
    corrupt: Iterable[int],
    *,
    keep_last: int,
    alias_window: timedelta,
    now: datetime,
) -> RetentionPlan:
    """Which of ``versions`` (the manifested ones) to keep, and which to delete.

    Kept: the current ``champion``; ``corrupt`` versions (evidence; never deleted
    automatically); the newest ``keep_last`` versions that are not corrupt (so a corrupt version
    never takes the place of a usable rollback target); and every version the alias was on at
    any moment of ``[now - alias_window, now]``. ``alias_history`` is one alias's moves as
    ``(version it moved to, when)``: an entry newer than the window's start keeps its version,
    and so does the one in force at the window's start (the last entry at or before it).
    Everything else is deleted.
    """
    if keep_last < 0:
        raise ValueError(f"keep_last must be >= 0, got {keep_last}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    existing = sorted(set(versions))
    present = set(existing)
    bad = set(corrupt) & present
    start = now - alias_window

    in_window: set[int] = set()
    in_force: int | None = None
    for version, at in sorted(alias_history, key=lambda entry: entry[1]):
        if at <= start:
            in_force = version  # the alias's value at the window's start (so far)
        if at >= start:
            in_window.add(version)
    if in_force is not None:
        in_window.add(in_force)

    healthy = [v for v in existing if v not in bad]
    newest = set(healthy[-keep_last:]) if keep_last else set()

    keep: dict[int, str] = {}
    for reason, chosen in (
        (KEEP_CHAMPION, {champion} if champion is not None else set()),
        (KEEP_CORRUPT, bad),
        (KEEP_NEWEST, newest),
        (KEEP_ALIAS_WINDOW, in_window),
    ):
        for version in sorted(chosen & present):
            keep.setdefault(version, reason)
    return RetentionPlan(
        keep=dict(sorted(keep.items())), delete=[v for v in existing if v not in keep]
    )


# -- outcome --------------------------------------------------------------------------------------


@dataclass
class IntegrityResult:
    checked: list[int] = field(default_factory=list)
    #: one per corrupt version: {"version", "files": [names], "detail"}
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def corrupt(self) -> set[int]:
        return {int(f["version"]) for f in self.failures}


@dataclass
class BackupResult:
    status: str = "skipped"  # done | skipped | dry_run
    detail: str = ""
    snapshot_id: str | None = None
    snapshot: dict[str, Any] | None = None
    pruned: list[str] = field(default_factory=list)  # with dry_run: would be pruned


@dataclass
class RetentionResult:
    keep: dict[int, str] = field(default_factory=dict)
    delete: list[int] = field(default_factory=list)  # the plan (with dry_run: would be deleted)
    deleted: list[int] = field(default_factory=list)
    #: planned, but the alias moved onto it before housekeeping marked it: kept
    reprieved: list[int] = field(default_factory=list)
    objects_deleted: int = 0


@dataclass
class OrphanResult:
    swept: list[int] = field(default_factory=list)  # with dry_run: would be swept
    waiting: list[int] = field(default_factory=list)  # younger than the grace period
    objects_deleted: list[str] = field(default_factory=list)


@dataclass
class ExpiryResult:
    markers: list[str] = field(default_factory=list)
    router_state: list[str] = field(default_factory=list)
    #: Objects of sharded monitor runs (warden.jobs.shards) past the markers' TTL.
    shard_objects: list[str] = field(default_factory=list)


@dataclass
class HousekeepingOutcome:
    model: str
    status: str  # completed | dry_run | duplicate
    version: int | None = None
    run_id: str = ""
    dry_run: bool = False
    detail: str = ""
    integrity: IntegrityResult = field(default_factory=IntegrityResult)
    backup: BackupResult = field(default_factory=BackupResult)
    retention: RetentionResult = field(default_factory=RetentionResult)
    orphans: OrphanResult = field(default_factory=OrphanResult)
    expiry: ExpiryResult = field(default_factory=ExpiryResult)
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The small record kept in the run ledger and ``status/housekeeping.json``."""
        return {
            "corrupt": sorted(self.integrity.corrupt),
            "snapshot": self.backup.snapshot_id if self.backup.status == "done" else None,
            "deleted_versions": self.retention.deleted,
            "orphans_swept": self.orphans.swept,
            "markers_purged": len(self.expiry.markers),
            "router_objects_purged": len(self.expiry.router_state),
            "shard_objects_purged": len(self.expiry.shard_objects),
        }


# -- use case -------------------------------------------------------------------------------------


def housekeep(
    request: RunRequest, rt: Runtime, *, actor: str = "housekeeping", dry_run: bool = False
) -> HousekeepingOutcome:
    cfg = rt.config.model(request.model)  # UnknownModelError is permanent
    if dry_run:  # changes nothing, so it takes no marker either
        return _run(rt, cfg, run_id=uuid.uuid4().hex, actor=actor, dry_run=True, key=request.key)

    def duplicate(prior: PriorRun) -> HousekeepingOutcome:
        return HousekeepingOutcome(
            model=cfg.name,
            status="duplicate",
            run_id=str(prior.record.get("run_id", "")),
            detail=f"already {prior.status}",
        )

    def failed(exc: PermanentError, run_id: str) -> None:
        rt.events().try_publish("failed", cfg.name, job=JOB, error=str(exc)[:2000], run_id=run_id)

    def finished(o: HousekeepingOutcome) -> Finished:
        return Finished(marker=o.summary(), status=o.summary())

    outcome = run_once(
        rt.ledger(),
        cfg.name,
        JOB,
        request.key,
        work=lambda run: _run(
            rt, cfg, run_id=run.run_id, actor=actor, dry_run=False, key=request.key
        ),
        finished=finished,
        duplicate=duplicate,
        failed=failed,
    )
    if outcome.status == "duplicate":
        return outcome
    _best_effort_metrics(
        rt,
        cfg.name,
        {
            "housekeeping/heartbeat": 1.0,
            "housekeeping/deleted_versions": float(len(outcome.retention.deleted)),
        },
    )
    return outcome


def run_housekeeping(rt: Runtime, model: str, *, dry_run: bool) -> HousekeepingOutcome:
    """A manual run (the CLI): its own unique request key; a dry run takes no marker."""
    cfg = rt.config.model(model)
    now = rt.clock().astimezone(UTC)
    message_id = uuid.uuid4().hex
    request = RunRequest(
        model=cfg.name,
        reason="manual",
        key=f"{JOB}:{cfg.name}:manual:{message_id}",
        message_id=message_id,
        as_of=now.date(),
        requested_at=now,
    )
    return housekeep(request, rt, actor="cli", dry_run=dry_run)


def _run(
    rt: Runtime, cfg: ModelConfig, *, run_id: str, actor: str, dry_run: bool, key: str
) -> HousekeepingOutcome:
    started = time.monotonic()
    now = rt.clock().astimezone(UTC)
    folders = rt.registry().version_folders(cfg.name)
    outcome = HousekeepingOutcome(
        model=cfg.name, status="dry_run" if dry_run else "completed", run_id=run_id
    )
    outcome.dry_run = dry_run
    outcome.integrity = _integrity(rt, cfg.name, folders, dry_run=dry_run)
    outcome.backup = _backup(rt, cfg, now, dry_run=dry_run, key=key)
    outcome.retention = _retention(
        rt, cfg, folders, outcome.integrity.corrupt, now, dry_run=dry_run, run_id=run_id
    )
    outcome.orphans = _orphans(rt, cfg, folders, now, dry_run=dry_run)
    outcome.expiry = _expiry(rt, cfg, now, dry_run=dry_run)
    outcome.duration_s = round(time.monotonic() - started, 3)
    outcome.detail = _describe(outcome)
    log.info(
        "housekeeping %s: %s",
        cfg.name,
        outcome.detail,
        extra=fields(model=cfg.name, run_id=run_id, actor=actor, dry_run=dry_run),
    )
    return outcome


# -- steps ----------------------------------------------------------------------------------------


def _integrity(
    rt: Runtime, model: str, folders: Mapping[int, Mapping[str, StoredObject]], *, dry_run: bool
) -> IntegrityResult:
    registry = rt.registry()
    result = IntegrityResult()
    for version, objects in folders.items():
        if MANIFEST not in objects:
            continue
        result.checked.append(version)
        problems = _check_version(rt, model, version, objects)
        if not problems:
            continue
        try:  # retired by a concurrent run since the listing: not corruption
            registry.manifest(model, version)
        except VersionNotFound:
            continue
        except IntegrityError:
            pass
        files = sorted(problems)
        detail = f"{model} v{version}: " + "; ".join(problems[f] for f in files)
        result.failures.append({"version": version, "files": files, "detail": detail})
        log.error(
            "integrity check failed: %s",
            detail,
            extra=fields(model=model, version=version, files=files),
        )
    if not dry_run:
        for failure in result.failures:
            rt.events().try_publish("integrity_failed", model, **failure)
        _best_effort_metrics(
            rt, model, {"housekeeping/integrity_failures": float(len(result.failures))}
        )
    return result


def _check_version(
    rt: Runtime, model: str, version: int, objects: Mapping[str, StoredObject]
) -> dict[str, str]:
    """file name → what is wrong with it (empty: the version is intact)."""
    registry = rt.registry()
    try:
        manifest = registry.manifest(model, version)
    except VersionNotFound:
        return {}  # retired since the listing
    except IntegrityError as exc:
        return {MANIFEST: str(exc)}
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return {MANIFEST: "the manifest lists no files"}
    problems: dict[str, str] = {}
    for name, record in sorted(files.items()):
        want = record.get("sha256") if isinstance(record, dict) else None
        obj = objects.get(name)
        digest = None if obj is None else registry.file_sha256(obj.path)
        if digest is None:
            problems[name] = f"{name} is missing"
        elif digest != want:
            problems[name] = (
                f"{name} sha256 {digest[:16]}… does not match the manifest's {str(want)[:16]}…"
            )
    return problems


def snapshot_id_for(model: str, now: datetime, key: str) -> str:
    """One snapshot per run: a redelivery of the same request completes the same snapshot, and a
    second run on the same day (a manual one after new versions) takes a fresh one."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{now:%Y%m%d}-{model}-{digest}"


def _backup(
    rt: Runtime, cfg: ModelConfig, now: datetime, *, dry_run: bool, key: str
) -> BackupResult:
    spec = cfg.housekeeping
    if not spec.backup:
        return BackupResult(status="skipped", detail="housekeeping.backup is off")
    snapshot_id = snapshot_id_for(cfg.name, now, key)
    try:
        backup = importlib.import_module("warden.jobs.backup")
    except ImportError as exc:
        if dry_run:
            return BackupResult(
                status="skipped",
                detail=f"dry run: warden.jobs.backup is not available ({exc})",
                snapshot_id=snapshot_id,
            )
        # Never delete without the snapshot the config asks for.
        raise PermanentError(
            f"{cfg.name}: housekeeping.backup is on, but warden.jobs.backup cannot be imported "
            f"({exc}); set housekeeping.backup: false to run without snapshots"
        ) from exc
    if dry_run:
        pruned = list(
            backup.prune_snapshots(
                rt,
                retention_days=spec.backup_retention_days,
                now=now,
                dry_run=True,
                model=cfg.name,
            )
        )
        return BackupResult(
            status="dry_run",
            detail=f"dry run: would snapshot {snapshot_id} and prune {len(pruned)} snapshot(s)",
            snapshot_id=snapshot_id,
            pruned=pruned,
        )
    snapshot = backup.snapshot(rt, model=cfg.name, snapshot_id=snapshot_id).to_dict()
    pruned = list(
        backup.prune_snapshots(
            rt, retention_days=spec.backup_retention_days, now=now, model=cfg.name
        )
    )
    return BackupResult(
        status="done",
        detail=f"snapshot {snapshot_id}; pruned {len(pruned)} snapshot(s)",
        snapshot_id=snapshot_id,
        snapshot={k: v for k, v in snapshot.items() if k in _SNAPSHOT_SUMMARY},
        pruned=pruned,
    )


#: What the outcome keeps of a snapshot's description (not its per-file records).
_SNAPSHOT_SUMMARY = (
    "id",
    "uri",
    "created_at",
    "versions",
    "skipped",
    "copied",
    "reused",
    "already_complete",
)


def _retention(
    rt: Runtime,
    cfg: ModelConfig,
    folders: Mapping[int, Mapping[str, StoredObject]],
    corrupt: set[int],
    now: datetime,
    *,
    dry_run: bool,
    run_id: str = "",
) -> RetentionResult:
    registry = rt.registry()
    spec = cfg.housekeeping.retention
    champion = registry.alias(cfg.name)
    history = [(h.version, _parse_time(h.changed_at)) for h in registry.history(cfg.name)]
    plan = retention_plan(
        [v for v, objects in folders.items() if MANIFEST in objects],
        champion.version if champion else None,
        history,
        corrupt,
        keep_last=spec.keep_last,
        alias_window=timedelta(days=spec.alias_window_days),
        now=now,
    )
    result = RetentionResult(keep=plan.keep, delete=list(plan.delete))
    if dry_run or not plan.delete:
        return result

    # 1. Mark the doomed versions in the alias object (compare-and-swap): from here on no promote
    #    or rollback can move onto them, and one that moved onto one first has kept it out.
    marked = registry.mark_retiring(cfg.name, plan.delete, by=run_id or "housekeeping")
    result.reprieved = [v for v in plan.delete if v not in marked]
    for v in result.reprieved:
        log.warning(
            "version became champion during housekeeping; kept",
            extra=fields(model=cfg.name, version=v),
        )
    try:
        # 2. Manifests first: every doomed version vanishes for readers, its files still there.
        retired = [r for v in marked if (r := registry.retire_manifest(cfg.name, v)) is not None]
        # 3. Then the files; the claim stays so the number is never handed out again.
        for r in retired:
            deleted = registry.delete_files(cfg.name, r.version, folders[r.version])
            result.deleted.append(r.version)
            result.objects_deleted += 1 + len(deleted)
    finally:
        registry.clear_retiring(cfg.name, marked, by=run_id or "housekeeping")
    log.info(
        "retired %d version(s)",
        len(result.deleted),
        extra=fields(model=cfg.name, versions=result.deleted, keep=plan.keep),
    )
    after = registry.alias(cfg.name)
    if after is not None and after.version in result.deleted:  # lost that race after all
        detail = (
            f"{cfg.name}: champion v{after.version} was moved onto a version housekeeping was "
            "deleting; roll it back to a version that verifies"
        )
        log.error(detail, extra=fields(model=cfg.name, version=after.version))
        rt.events().try_publish(
            "integrity_failed", cfg.name, version=after.version, files=[MANIFEST], detail=detail
        )
    return result


def _orphans(
    rt: Runtime,
    cfg: ModelConfig,
    folders: Mapping[int, Mapping[str, StoredObject]],
    now: datetime,
    *,
    dry_run: bool,
) -> OrphanResult:
    registry = rt.registry()
    grace = timedelta(hours=cfg.housekeeping.orphan_grace_hours)
    result = OrphanResult()
    for version, objects in folders.items():
        if MANIFEST in objects:
            continue
        files = {name: obj for name, obj in objects.items() if name != CLAIM}
        if not files:
            continue  # a retired version (its claim keeps the number) or a fresh claim
        stamps = [obj.created for obj in objects.values() if obj.created is not None]
        if not stamps or now - max(stamps) < grace:
            result.waiting.append(version)  # a retrain may still be writing it (or: undatable)
            continue
        if dry_run:
            result.swept.append(version)
            result.objects_deleted += sorted(obj.path for obj in files.values())
            continue
        try:  # committed since the listing? then it is no orphan
            registry.manifest(cfg.name, version)
            continue
        except VersionNotFound:
            pass
        except IntegrityError:
            continue
        result.objects_deleted += registry.delete_files(cfg.name, version, files)
        result.swept.append(version)
    if result.swept and not dry_run:
        log.info(
            "swept orphaned version folders",
            extra=fields(model=cfg.name, versions=result.swept),
        )
    return result


def _expiry(rt: Runtime, cfg: ModelConfig, now: datetime, *, dry_run: bool) -> ExpiryResult:
    markers = rt.ledger().purge(
        cfg.name,
        older_than=now - timedelta(days=cfg.housekeeping.marker_ttl_days),
        dry_run=dry_run,
    )
    from warden.jobs.shards import purge_shards

    shards = purge_shards(
        rt,
        cfg.name,
        older_than=now - timedelta(days=cfg.housekeeping.marker_ttl_days),
        dry_run=dry_run,
    )
    router = rt.alert_state().purge_expired(
        now=now.timestamp(), older_than=ROUTER_STATE_TTL, dry_run=dry_run
    )
    return ExpiryResult(markers=markers, router_state=router, shard_objects=shards)


# -- helpers --------------------------------------------------------------------------------------


def _parse_time(text: str) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _describe(o: HousekeepingOutcome) -> str:
    would = "would be " if o.dry_run else ""
    parts = [f"{len(o.integrity.checked)} version(s) checked"]
    if o.integrity.failures:
        bad = ", ".join(f"v{v}" for v in sorted(o.integrity.corrupt))
        parts.append(f"CORRUPT: {bad} (kept)")
    parts.append(f"backup {o.backup.status}")
    gone = o.retention.delete if o.dry_run else o.retention.deleted
    parts.append(f"{len(gone)} version(s) {would}deleted, {len(o.retention.keep)} kept")
    if o.retention.reprieved:
        parts.append(f"reprieved {o.retention.reprieved}")
    parts.append(f"{len(o.orphans.swept)} orphan folder(s) {would}swept")
    parts.append(
        f"{len(o.expiry.markers)} marker(s) and {len(o.expiry.router_state)} router object(s) "
        f"{would}purged"
    )
    return "; ".join(parts)


def _best_effort_metrics(rt: Runtime, model: str, values: Mapping[str, float]) -> None:
    from warden.telemetry.metrics import MetricPoint

    try:
        rt.metrics().write([MetricPoint(name, v, {"model": model}) for name, v in values.items()])
    except Exception as exc:  # metrics are observability, not state: never fail the run
        log.error("could not write metrics: %s", exc, extra=fields(model=model))
