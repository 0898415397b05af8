"""A monitor run split over the N tasks of one Cloud Run job execution.

Every object lives under ``MODEL/monitoring/shards/<request key digest>/`` in the registry
bucket (the monitor's own prefix):

1. ``plan.json`` — the champion version and the window's file listing, written create-only by
   whichever task gets there first and read by all: every task reads the same files of the same
   version, whatever lands in the window or is promoted meanwhile.
2. Task *i* takes its share of the files (:func:`share`: contiguous, balanced by bytes), streams
   them into the run's count accumulators (:class:`warden.jobs.monitor.Scan`) and writes
   ``sample-i-of-N.parquet`` then ``partial-i-of-N.json`` (its counts), both create-only. A
   partial exists only once its sample does; a retried task whose partial landed does not read
   again.
3. After writing, a task lists the partials. Whoever sees all N claims ``merge.json``
   (create-only; a claim whose ``until`` passed may be replaced by compare-and-swap, so a merger
   whose retries ran out does not block the request for ever). The claimant merges the partials
   in task order — the counts are additive and the scoring sample is keyed by file, so the merged
   scan *is* the one-process scan of the window (:meth:`DriftAccumulator.state`) — and concludes
   through the run ledger, exactly as a one-process run does: one ``drift.json``, one set of
   metrics, events and retrain request per request.

Tasks that write their partial before the last one ends their part there (status ``partial``).
Housekeeping deletes a run's shard folder once its newest object is older than the model's
``housekeeping.marker_ttl_days`` (:func:`purge_shards`): the samples are megabytes each.
Two executions of one request (a redelivery racing the first) write identical partials (412s,
harmless) and meet at the same merge claim and run-ledger marker.

Imports: the foundation, :mod:`warden.store`, :mod:`warden.jobs.monitor`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from warden.errors import ConflictError, IntegrityError, PermanentError
from warden.jobs.messages import RunRequest
from warden.jobs.monitor import (
    JOB,
    MonitorOutcome,
    Prepared,
    Scan,
    conclude,
    ledgered,
    monitor,
    prepare,
)
from warden.logs import fields
from warden.runtime import Runtime
from warden.settings import TaskContext
from warden.store import gcs
from warden.store.runs import FINAL, Run

__all__ = ["monitor_task", "purge_shards", "shard_root", "share"]

log = logging.getLogger(__name__)

ACTOR = "monitor_job"
PARQUET_TYPE = "application/vnd.apache.parquet"


def shard_root(model: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{model}/monitoring/shards/{digest}/"


def share(sizes: Sequence[int], index: int, count: int) -> list[int]:
    """The files (indices into ``sizes``) task ``index`` of ``count`` reads: contiguous runs,
    balanced by bytes — a file goes to the task whose slice of the total holds the file's
    middle byte. Every file goes to exactly one task; a task may get none."""
    total = sum(sizes)
    if total <= 0:  # sizes unknown: balance by count
        sizes, total = [1] * len(sizes), len(sizes)
    out, before = [], 0
    for i, size in enumerate(sizes):
        middle = before + size / 2
        if min(int(middle * count / total), count - 1) == index:
            out.append(i)
        before += size
    return out


def monitor_task(
    request: RunRequest, rt: Runtime, task: TaskContext, *, lease: timedelta
) -> MonitorOutcome:
    """This task's part of a monitor run (all of it when the execution has one task)."""
    owner = f"{task.execution}/{task.index}"
    if task.count == 1:
        return monitor(request, rt, actor=ACTOR, owner=owner, lease=lease)
    cfg = rt.config.model(request.model)
    try:
        return _shard(request, rt, task, owner=owner, lease=lease)
    except PermanentError as exc:
        error = exc

        # Every task meets the same bad window: the first records the failure in the run
        # ledger (a failed marker, the status, a ``failed`` event), the others find it there.
        def fail(_run: Run) -> MonitorOutcome:
            raise error

        return ledgered(request, rt, cfg, fail, owner=owner, lease=lease)


def _shard(
    request: RunRequest, rt: Runtime, task: TaskContext, *, owner: str, lease: timedelta
) -> MonitorOutcome:
    cfg = rt.config.model(request.model)
    marker = rt.ledger().marker(cfg.name, JOB, request.key)
    if marker is not None and marker.get("status") in FINAL:
        return MonitorOutcome(cfg.name, "duplicate", detail=f"already {marker['status']}")
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    root = shard_root(cfg.name, request.key)
    plan, mine = _plan(request, rt, bucket, root)
    if plan.get("skip"):  # nothing to monitor: recorded once, like a one-process run
        return monitor(request, rt, actor=ACTOR, owner=owner, lease=lease)
    # The task that wrote the plan has its champion read already; the others read the one the
    # plan pins.
    prep = mine or prepare(request, rt, cfg, version=int(plan["version"]))
    if isinstance(prep, str):
        return monitor(request, rt, actor=ACTOR, owner=owner, lease=lease)
    n, i = task.count, task.index
    partial = f"{root}partial-{i:05d}-of-{n:05d}.json"
    if gcs.read_json(bucket, partial) is None:
        reader = prep.reader(rt, request, plan=plan["window"])
        scan = Scan.empty(prep, request)
        files = share(reader.sizes(), i, n)
        scan.read(prep, reader, files)
        sample = f"{root}sample-{i:05d}-of-{n:05d}.parquet"
        gcs.create(bucket, sample, scan.sample.state(), content_type=PARQUET_TYPE)
        body = {
            "schema": 1,
            "task": i,
            "count": n,
            "version": prep.version,
            "files": len(files),
            "rows": reader.rows,
            "missing": reader.missing_counts,
            "drift": scan.drift.state(),
            "predictions": scan.predictions.state() if scan.predictions is not None else None,
            "sample": sample,
            "sample_rows": scan.sample.rows,
        }
        # Create-only; a 412 is another execution's partial of the same files (the same counts).
        gcs.create(bucket, partial, gcs.dumps(body), content_type="application/json")
        log.info(
            "shard %d/%d read %d file(s), %d row(s)",
            i + 1,
            n,
            len(files),
            reader.rows,
            extra=fields(model=cfg.name, execution=task.execution, task=i),
        )
    landed = sum(
        1
        for b in rt.clients.storage.list_blobs(bucket.name, prefix=f"{root}partial-")
        if b.name.endswith(f"-of-{n:05d}.json")
    )
    if landed < n:
        return MonitorOutcome(
            cfg.name, "partial", prep.version, detail=f"shard {i + 1}/{n}: {landed}/{n} landed"
        )
    if not _claim_merge(rt, bucket, root, owner, lease):
        return MonitorOutcome(
            cfg.name, "partial", prep.version, detail=f"shard {i + 1}/{n}: another task merges"
        )

    def merge(run: Run) -> MonitorOutcome:
        reader = prep.reader(rt, request, plan=plan["window"])
        scan = Scan.empty(prep, request)
        for k in range(n):
            got = gcs.read_json(bucket, f"{root}partial-{k:05d}-of-{n:05d}.json")
            if got is None:
                raise IntegrityError(f"{root}: partial {k} of {n} vanished before the merge")
            part = got.data
            scan.drift.merge(part["drift"])
            if scan.predictions is not None:
                scan.predictions.merge(part["predictions"])
            rows = gcs.read_bytes(bucket, part["sample"])
            if rows is None:
                raise IntegrityError(f"{part['sample']} vanished before the merge")
            scan.sample.merge(rows.data, rows=int(part["sample_rows"]))
            reader.add_counts(int(part["rows"]), part["missing"])
        log.info(
            "merging %d shard(s): %d row(s)",
            n,
            reader.rows,
            extra=fields(model=cfg.name, execution=task.execution, task=i),
        )
        return conclude(request, rt, prep, scan, reader, run, actor=ACTOR)

    return ledgered(request, rt, cfg, merge, owner=owner, lease=lease)


def _plan(
    request: RunRequest, rt: Runtime, bucket: Any, root: str
) -> tuple[dict[str, Any], Prepared | None]:
    """The run's pinned version and listing (or why there is nothing to monitor): the first
    task's, create-only, for all; and, to the task that wrote it, what it prepared."""
    name = f"{root}plan.json"
    got = gcs.read_json(bucket, name)
    if got is not None:
        return dict(got.data), None
    cfg = rt.config.model(request.model)
    prep = prepare(request, rt, cfg)
    if isinstance(prep, str):
        plan: dict[str, Any] = {"schema": 1, "skip": prep}
    else:
        reader = prep.reader(rt, request)
        plan = {"schema": 1, "version": prep.version, "window": reader.plan()}
    if gcs.create(bucket, name, gcs.dumps(plan), content_type="application/json") is None:
        got = gcs.read_json(bucket, name)  # another task's: the one every task follows
        if got is None:
            raise ConflictError(f"{name}: created by another task, then gone")
        return dict(got.data), None
    return plan, None if isinstance(prep, str) else prep


def _claim_merge(rt: Runtime, bucket: Any, root: str, owner: str, lease: timedelta) -> bool:
    """Whether this task merges: it created the claim, or the claim is its own earlier
    attempt's, or the claim's holder overran ``until`` (then taken by compare-and-swap)."""
    name = f"{root}merge.json"
    now = rt.clock()
    body = gcs.dumps({"owner": owner, "until": (now + lease).isoformat()})
    if gcs.create(bucket, name, body, content_type="application/json") is not None:
        return True
    got = gcs.read_json(bucket, name)
    if got is None:  # removed meanwhile: try once more
        return gcs.create(bucket, name, body, content_type="application/json") is not None
    holder = got.data
    if holder.get("owner") == owner:
        return True
    try:
        until = datetime.fromisoformat(str(holder.get("until")))
    except ValueError:
        until = now  # unreadable: as good as expired
    if until > now:
        return False
    log.warning(
        "taking over a merge whose claim expired",
        extra=fields(root=root, previous=holder.get("owner"), owner=owner),
    )
    written = gcs.write_if(
        bucket, name, body, generation=got.generation, content_type="application/json"
    )
    return written is not None


def purge_shards(
    rt: Runtime, model: str, *, older_than: datetime, dry_run: bool = False
) -> list[str]:
    """Delete the shard folders (plan, partials, samples, merge claim) of ``model``'s sharded
    monitor runs whose newest object was written before ``older_than``; the names deleted (or,
    with ``dry_run``, that would be). A folder with anything newer is left whole: its run may
    still be going on."""
    prefix = f"{model}/monitoring/shards/"
    folders: dict[str, list[Any]] = {}
    for blob in rt.clients.storage.list_blobs(rt.settings.registry_bucket, prefix=prefix):
        folder = blob.name[len(prefix) :].split("/", 1)[0]
        folders.setdefault(folder, []).append(blob)
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    purged: list[str] = []
    for blobs in folders.values():
        newest = max((b.updated or b.time_created for b in blobs), default=None)
        if newest is None or newest >= older_than:
            continue
        for blob in blobs:
            if dry_run or gcs.delete_if(bucket, blob.name, int(blob.generation or 0)):
                purged.append(blob.name)
    return purged
