"""Run ledger: makes at-least-once delivery do the work once, and records the last outcome.

One small JSON marker per request key (message id or scheduled time), under
``MODEL/runs/KIND/<sha256(key)[:32]>.json`` in the registry bucket:

* ``begin`` creates it create-only with ``status: running`` and a lease. A redelivery finds it:
  ``done``/``failed`` → nothing to do (acknowledge); ``running`` within its lease → another
  instance is on it (raise :class:`RunInProgress`, Pub/Sub redelivers later); ``running`` past
  its lease or ``aborted`` → take it over by compare-and-swap on the marker's generation.
* ``checkpoint`` records progress in the running marker (compare-and-swap): a retrain records
  the version number it claimed before it writes the version. An attempt that takes the marker
  over inherits that progress (:attr:`Run.resumed`), so a redelivery carries on from the version
  its own request registered instead of registering another.
* ``finish`` moves it to its final state by compare-and-swap; losing that race means another
  instance took over a lease we overran, and its outcome wins. It keeps ``started_at``, so a
  finished marker tells how long its run took.
* ``marker`` and ``recent`` read them back for operators (``warden runs``, ``--wait``).

Every read, create-only and compare-and-swap write goes through :mod:`warden.store.gcs` (which
also tells our own retried write from a lost race).

``MODEL/status/KIND.json`` keeps the last run, last success and last failure for ``health``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from warden.errors import ConflictError, IntegrityError, PermanentError, RunInProgress
from warden.store import gcs

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)
T = TypeVar("T")

FINAL = ("done", "failed")


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@dataclass(frozen=True)
class RunClaim:
    model: str
    kind: str
    key: str
    run_id: str
    name: str
    generation: int
    #: What earlier attempts of this request recorded with :meth:`RunLedger.checkpoint`.
    progress: dict[str, Any] = field(default_factory=dict)
    #: When this attempt began (the marker's ``started_at``); :meth:`RunLedger.finish` keeps it.
    started_at: str = ""
    #: Which attempt at the request this is (1: the first), kept in the final marker too.
    attempt: int = 1


@dataclass(frozen=True)
class PriorRun:
    """A request that already finished: its marker's content."""

    record: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.record.get("status"))


class RunLedger:
    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        *,
        lease: timedelta = timedelta(minutes=20),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.bucket_name = bucket
        self.lease = lease
        self._clock = clock

    @property
    def bucket(self) -> storage.Bucket:
        bucket: storage.Bucket = self._client.bucket(self.bucket_name)
        return bucket

    @staticmethod
    def marker_name(model: str, kind: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{model}/runs/{kind}/{digest}.json"

    def begin(
        self,
        model: str,
        kind: str,
        key: str,
        run_id: str,
        *,
        owner: str | None = None,
        lease: timedelta | None = None,
    ) -> RunClaim | PriorRun:
        """Claim ``key``: create its marker, or take over a stale or aborted one (by
        compare-and-swap). A finished request → :class:`PriorRun`; one running elsewhere within
        its lease → :class:`RunInProgress`.

        ``owner`` names who runs it when a retry of the same worker is recognisable: a Cloud Run
        job task (``EXECUTION/TASK_INDEX``) is retried only after its previous attempt ended, so
        a running marker with our owner is our own dead attempt, taken over at once instead of
        waiting out its lease. ``lease`` overrides the ledger's (a job may run for hours)."""
        name = self.marker_name(model, kind, key)
        now = self._clock()
        record = {
            "model": model,
            "kind": kind,
            "key": key,
            "run_id": run_id,
            "status": "running",
            "started_at": _iso(now),
            "lease_until": _iso(now + (lease or self.lease)),
            "attempt": 1,
        }
        if owner:
            record["owner"] = owner
        prior: list[PriorRun] = []
        replaced: list[dict[str, Any]] = []

        def change(stored: gcs.Stored[Any] | None) -> dict[str, Any] | None:
            prior.clear()
            replaced.clear()
            if stored is None:  # new (or expired and purged meanwhile): create it
                return record
            existing: dict[str, Any] = stored.data
            if existing.get("status") in FINAL:
                prior.append(PriorRun(existing))
                return None
            ours = bool(owner) and existing.get("owner") == owner
            if (
                existing.get("status") == "running"
                and _parse(existing["lease_until"]) > now
                and not ours
            ):
                raise RunInProgress(
                    f"{model}: {kind} for {key} is already running (run {existing.get('run_id')},"
                    f" lease until {existing['lease_until']})"
                )
            replaced.append(existing)
            taken = {
                **record,
                "attempt": int(existing.get("attempt", 1)) + 1,
                "previous_run_id": existing.get("run_id"),
            }
            if isinstance(existing.get("progress"), dict) and existing["progress"]:
                taken["progress"] = existing["progress"]  # carry on where it stopped
            return taken

        got = gcs.update_json(
            self.bucket,
            name,
            change,
            attempts=10,
            conflict=f"{model}: could not claim run marker {name}",
        )
        if prior:
            return prior[0]
        if replaced:
            log.warning(
                "taking over a stale or aborted run",
                extra={
                    "json_fields": {
                        "model": model,
                        "kind": kind,
                        "key": key,
                        "previous_run_id": replaced[0].get("run_id"),
                    }
                },
            )
        progress = got.data.get("progress") if isinstance(got.data, dict) else None
        return RunClaim(
            model,
            kind,
            key,
            run_id,
            name,
            got.generation,
            dict(progress or {}),
            started_at=str(got.data.get("started_at") or record["started_at"]),
            attempt=int(got.data.get("attempt") or 1),
        )

    def checkpoint(self, claim: RunClaim, progress: Mapping[str, Any]) -> RunClaim:
        """Record ``progress`` (merged into what is there) in the running marker, by
        compare-and-swap at the claim's generation; the claim to use from now on.

        :class:`~warden.errors.ConflictError` (retryable) when the marker is no longer ours —
        another instance took over a lease we overran: stop before doing what it may redo.
        """
        merged = {**claim.progress, **progress}

        def change(stored: gcs.Stored[Any] | None) -> dict[str, Any]:
            if (
                stored is None
                or stored.generation != claim.generation
                or stored.data.get("run_id") != claim.run_id
                or stored.data.get("status") != "running"
            ):
                raise ConflictError(
                    f"{claim.model}: {claim.kind} for {claim.key}: run {claim.run_id} no longer "
                    "holds its marker (taken over after its lease)"
                )
            return {**stored.data, "progress": merged}

        got = gcs.update_json(self.bucket, claim.name, change, attempts=2)
        return replace(claim, generation=got.generation, progress=merged)

    def finish(self, claim: RunClaim, status: str, result: dict[str, Any]) -> bool:
        """Record the final (or ``aborted``) state. False if another instance took over."""
        record: dict[str, Any] = {
            "model": claim.model,
            "kind": claim.kind,
            "key": claim.key,
            "run_id": claim.run_id,
            "status": status,
            "finished_at": _iso(self._clock()),
            "result": result,
        }
        if claim.started_at:  # kept, so a finished run still tells how long it took
            record["started_at"] = claim.started_at
        if claim.attempt > 1:  # it took more than one attempt: operators see it
            record["attempt"] = claim.attempt
        if claim.progress:  # an aborted run's redelivery carries on from here
            record["progress"] = claim.progress
        written = gcs.write_if(
            self.bucket,
            claim.name,
            gcs.dumps(record),
            generation=claim.generation,
            content_type="application/json",
        )
        if written is None:
            log.warning(
                "run marker changed under us; another instance took over",
                extra={"json_fields": {"model": claim.model, "key": claim.key}},
            )
            return False
        return True

    # -- reading (the CLI: warden runs, --wait) -----------------------------------------------
    def marker(self, model: str, kind: str, key: str) -> dict[str, Any] | None:
        """The marker of request ``key``, or None while no attempt has claimed it."""
        got = gcs.read_json(self.bucket, self.marker_name(model, kind, key))
        if got is None or not isinstance(got.data, dict):
            return None
        record: dict[str, Any] = got.data
        return record

    def recent(
        self, model: str, *, kind: str | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        """The ``limit`` most recently written markers of ``model`` (of one ``kind``, or all),
        newest first by ``started_at``; each with ``marker`` (its object name) added.

        Cost: one listing of ``MODEL/runs/[KIND/]`` (a page per 1,000 markers; housekeeping
        expires them after ``housekeeping.marker_ttl_days``, so a model keeps a few per job and
        day), then one read per marker returned: the listing's write times pick the newest before
        anything is read. A marker that vanished meanwhile (expired) or does not parse is
        skipped.
        """
        if limit <= 0:
            return []
        prefix = f"{model}/runs/{kind}/" if kind else f"{model}/runs/"
        blobs = [
            b
            for b in self._client.list_blobs(self.bucket_name, prefix=prefix)
            if b.name.endswith(".json")
        ]
        epoch = datetime.min.replace(tzinfo=UTC)
        blobs.sort(key=lambda b: b.updated or b.time_created or epoch, reverse=True)
        rows: list[dict[str, Any]] = []
        for blob in blobs[:limit]:
            try:
                got = gcs.read_json(self.bucket, blob.name)
            except IntegrityError:
                log.warning(
                    "unreadable run marker skipped",
                    extra={"json_fields": {"model": model, "marker": blob.name}},
                )
                continue
            if got is None or not isinstance(got.data, dict):
                continue
            rows.append({**got.data, "marker": blob.name})

        def started(row: dict[str, Any]) -> datetime:
            try:
                at = _parse(str(row.get("started_at") or row.get("finished_at")))
            except ValueError:
                return epoch
            return at if at.tzinfo else at.replace(tzinfo=UTC)

        rows.sort(key=started, reverse=True)
        return rows

    # -- hand-offs to Cloud Run jobs (warden.jobs.dispatch) -----------------------------------
    @classmethod
    def dispatch_name(cls, model: str, kind: str, key: str) -> str:
        return cls.marker_name(model, kind, key).removesuffix(".json") + ".dispatch.json"

    def dispatched(self, model: str, kind: str, key: str) -> gcs.Stored[Any] | None:
        """The record of request ``key`` handed to a job execution, or None."""
        got = gcs.read_json(self.bucket, self.dispatch_name(model, kind, key))
        return got if got is not None and isinstance(got.data, dict) else None

    def record_dispatch(
        self,
        model: str,
        kind: str,
        key: str,
        execution: str,
        *,
        generation: int = 0,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record that ``key`` was handed to ``execution`` (create-only, or replacing the record
        read at ``generation``). False: another delivery recorded one meanwhile."""
        record = {
            "model": model,
            "kind": kind,
            "key": key,
            "status": "dispatched",
            "execution": execution,
            "started_at": _iso(self._clock()),
            **(detail or {}),
        }
        name = self.dispatch_name(model, kind, key)
        return gcs.write_if(self.bucket, name, gcs.dumps(record), generation=generation) is not None

    # -- expiry (housekeeping) ----------------------------------------------------------------
    def purge(self, model: str, *, older_than: datetime, dry_run: bool = False) -> list[str]:
        """Delete ``model``'s markers that finished (done, failed, aborted) before
        ``older_than``, and ``running`` ones whose lease ran out before it (their instance
        died long ago). A marker within its lease is never touched; ``status/`` is not either.

        Each delete is conditional on the generation that was read, so a marker a redelivery
        just took over or finished is left alone. Returns the names deleted (or, with
        ``dry_run``, that would be).
        """
        purged = []
        for blob in self._client.list_blobs(self.bucket_name, prefix=f"{model}/runs/"):
            if not blob.name.endswith(".json"):
                continue
            try:
                got = gcs.read_json(self.bucket, blob.name)
                if got is None:
                    continue
                record, generation = got.data, got.generation
                status = record.get("status")
                if status in (*FINAL, "aborted", "dispatched"):
                    ended = _parse(record.get("finished_at") or record["started_at"])
                elif status == "running":
                    ended = _parse(record["lease_until"])
                else:
                    continue
            except (IntegrityError, ValueError, KeyError, TypeError, AttributeError):
                log.warning(
                    "unreadable run marker left alone",
                    extra={"json_fields": {"model": model, "marker": blob.name}},
                )
                continue
            if ended >= older_than:
                continue
            if not dry_run and not gcs.delete_if(self.bucket, blob.name, generation):
                continue
            purged.append(blob.name)
        return purged

    # -- last outcome per model and kind (read by health) -----------------------------------
    def status(self, model: str, kind: str) -> dict[str, Any] | None:
        got = gcs.read_json(self.bucket, f"{model}/status/{kind}.json")
        if got is None:
            return None
        record: dict[str, Any] = got.data
        return record

    def record_status(self, model: str, kind: str, *, outcome: str, detail: dict[str, Any]) -> None:
        """Fold one run's outcome into ``MODEL/status/KIND.json`` by compare-and-swap."""
        now = _iso(self._clock())

        def change(stored: gcs.Stored[Any] | None) -> dict[str, Any]:
            current = {} if stored is None else stored.data
            entry = {"at": now, "outcome": outcome, **detail}
            new = {**current, "model": model, "kind": kind, "last_run": entry}
            if outcome == "failed":
                new["last_failure"] = entry
            else:
                new["last_success"] = entry
            return new

        gcs.update_json(
            self.bucket,
            f"{model}/status/{kind}.json",
            change,
            attempts=20,
            conflict=f"{model}: status {kind} kept changing under us",
        )


class Run:
    """The attempt in progress of one request, as :func:`run_once` hands it to the work."""

    def __init__(self, ledger: RunLedger, claim: RunClaim) -> None:
        self._ledger = ledger
        self.claim = claim
        #: What an earlier attempt of this request recorded before it stopped (empty: none).
        self.resumed: Mapping[str, Any] = dict(claim.progress)

    @property
    def run_id(self) -> str:
        return self.claim.run_id

    def checkpoint(self, **progress: Any) -> None:
        """Record progress in the run's marker; a later attempt finds it in ``resumed``."""
        self.claim = self._ledger.checkpoint(self.claim, progress)


@dataclass(frozen=True)
class Finished:
    """What a successful run leaves in its marker and in ``MODEL/status/KIND.json``."""

    marker: dict[str, Any]
    status: dict[str, Any]


def run_once(
    ledger: RunLedger,
    model: str,
    kind: str,
    key: str,
    *,
    work: Callable[[Run], T],
    finished: Callable[[T], Finished],
    duplicate: Callable[[PriorRun], T],
    failed: Callable[[PermanentError, str], None] = lambda _exc, _run_id: None,
    owner: str | None = None,
    lease: timedelta | None = None,
) -> T:
    """Run ``work(run)`` at most once per request ``key`` (retrain, monitor, housekeeping).

    ``run`` (:class:`Run`) carries the run id, what an earlier attempt recorded (``resumed``)
    and ``checkpoint`` to record progress.

    A finished request returns ``duplicate(prior)``; one running elsewhere within its lease
    raises :class:`RunInProgress` (``owner`` and ``lease``: :meth:`RunLedger.begin`). A
    permanent error is recorded (marker ``failed``, status),
    passed to ``failed`` and re-raised; anything else releases the marker (``aborted``) so the
    redelivery can start at once, and propagates.
    """
    import uuid

    from warden.logs import fields

    run_id = uuid.uuid4().hex
    claim = ledger.begin(model, kind, key, run_id, owner=owner, lease=lease)
    if isinstance(claim, PriorRun):
        log.info(
            "duplicate %s request; already %s",
            kind,
            claim.status,
            extra=fields(model=model, key=key),
        )
        return duplicate(claim)
    run = Run(ledger, claim)
    try:
        outcome = work(run)
    except PermanentError as exc:
        ledger.finish(
            run.claim, "failed", {"error": str(exc)[:2000], "error_type": type(exc).__name__}
        )
        ledger.record_status(
            model, kind, outcome="failed", detail={"error": str(exc)[:2000], "run_id": run_id}
        )
        failed(exc, run_id)
        raise
    except BaseException:
        try:
            ledger.finish(run.claim, "aborted", {"run_id": run_id})
        except Exception:  # the original error matters more
            log.exception("could not release the run marker", extra=fields(model=model))
        raise
    done = finished(outcome)
    ledger.finish(run.claim, "done", done.marker)
    ledger.record_status(model, kind, outcome="success", detail={"run_id": run_id, **done.status})
    return outcome
