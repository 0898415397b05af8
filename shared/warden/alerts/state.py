"""Alerting state in Cloud Storage, changed only by compare-and-swap (see docs/alerting.md).

Layout under ``_alerting/`` in one bucket::

    groups/<sha256(group_key)[:32]>.json   one aggregation group: its alerts, what was last sent,
                                           and a claimed-but-unconfirmed notification (pending)
    silences/<id>.json                     create-only; expired by CAS setting ends_at = now
    nflog/<group>-<seq>.json               create-only record of each sent notification

Notifications go claim → send → confirm. The claim is a CAS that sets ``pending``, so of any
number of concurrent instances exactly one sends; a claim older than the lease is taken over
and re-sent (the one allowed repeat, after a crash between send and confirm).

Reads, create-only writes, compare-and-swap and conditional deletes all go through
:mod:`warden.store.gcs`, with its one backoff policy and its owner read-back after a 412.
"""

from __future__ import annotations

import copy
import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from warden.alerts import (
    Alert,
    DeliveryResult,
    RouteMatch,
    Silence,
    alert_from_state,
    alerts_now,
    digest,
    due,
    expire,
    group_id,
    inhibited,
    next_due,
    render_message,
    route_alert,
    to_send,
)
from warden.config.alerting import AlertingConfig, Receiver
from warden.errors import ConflictError
from warden.logs import fields
from warden.store import gcs

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

PREFIX = "_alerting/"
GROUPS = PREFIX + "groups/"
SILENCES = PREFIX + "silences/"
NFLOG = PREFIX + "nflog/"

Send = Callable[[Receiver, dict[str, Any]], DeliveryResult]
State = dict[str, Any]
Change = Callable[[State | None], State | None]


@dataclass
class Snapshot:
    """What one call read: the active silences and, when inhibition rules made it list them,
    every group as it stood after the call's own writes. A flush in the same call starts from
    it instead of listing and reading everything again; its compare-and-swap catches any group
    changed since (a group created since is flushed by its own call or the next tick)."""

    silences: list[Silence]
    groups: list[tuple[str, State, int]] | None = None


@dataclass
class IngestResult:
    changed_groups: list[str] = field(default_factory=list)
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    # resolves of unknown alerts (kept as tombstones: an open arriving later is ignored), late
    # redeliveries of resolved ones
    ignored: int = 0
    silenced: int = 0
    inhibited: int = 0
    snapshot: Snapshot | None = None


@dataclass
class FlushResult:
    sent: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped_claimed: int = 0  # another instance holds a fresh claim
    taken_over: int = 0  # stale claims re-sent
    lost_confirm: int = 0  # our claim was taken over before we confirmed


def _on_data(change: Change, stored: gcs.Stored[Any] | None) -> State | None:
    return change(None if stored is None else stored.data)


class AlertState:
    """``client`` is a ``google.cloud.storage.Client``; ``lease`` is how long a claim holds."""

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        *,
        lease: float = 60.0,
        max_attempts: int = 40,
    ) -> None:
        self._client = client
        self.bucket_name = bucket
        self.lease = lease
        self.max_attempts = max_attempts
        # name → (generation, content) of listed objects: a generation's content never changes,
        # so a listing that shows the generation we hold needs no read (one listing per call
        # instead of a read per group and silence).
        self._listed: dict[str, tuple[int, State]] = {}

    @property
    def bucket(self) -> storage.Bucket:
        bucket: storage.Bucket = self._client.bucket(self.bucket_name)
        return bucket

    # -- small-object primitives ----------------------------------------------------------------
    def _read(self, name: str) -> tuple[State | None, int]:
        got = gcs.read_json(self.bucket, name)
        return (None, 0) if got is None else (got.data, got.generation)

    def _write(self, name: str, data: State, generation: int) -> bool:
        """CAS write (generation 0 = create-only). False if another writer got there first."""
        written = gcs.write_if(
            self.bucket, name, gcs.dumps(data), generation=generation, content_type=gcs.JSON_TYPE
        )
        return written is not None

    def _names(self, prefix: str) -> list[str]:
        return [b.name for b in self._client.list_blobs(self.bucket_name, prefix=prefix)]

    def _list(self, prefix: str) -> list[tuple[str, State, int]]:
        """Every object under ``prefix`` with its content and generation: one listing, and a
        read only for the objects whose generation this instance has not read yet.

        The content returned is the instance's cached copy, shared between calls: callers
        read it, or copy it before changing it (``expire(copy.deepcopy(...))``; the
        compare-and-swap loop copies what it hands to ``change``)."""
        out = []
        seen = set()
        for blob in self._client.list_blobs(self.bucket_name, prefix=prefix):
            name, generation = blob.name, int(blob.generation or 0)
            seen.add(name)
            held = self._listed.get(name)
            if held is not None and held[0] == generation:
                out.append((name, held[1], generation))
                continue
            data, generation = self._read(name)
            if data is not None:
                self._listed[name] = (generation, data)
                out.append((name, data, generation))
        for name in [n for n in self._listed if n.startswith(prefix) and n not in seen]:
            self._listed.pop(name, None)  # gone (purged, expired)
        return out

    def _groups(self) -> list[tuple[str, State, int]]:
        return self._list(GROUPS)

    def _update(self, name: str, change: Change) -> State | None:
        """Read-modify-CAS until it sticks (:func:`warden.store.gcs.update_json`). ``change``
        returns the new object, or None for "no write needed"; it must be pure (it may run
        several times). Returns the object as it now is."""
        got = gcs.update_json(
            self.bucket,
            name,
            lambda stored: change(None if stored is None else stored.data),
            attempts=self.max_attempts,
        )
        data: State | None = got.data
        return data

    # -- silences -------------------------------------------------------------------------------
    def add_silence(
        self,
        matchers: Iterable[str],
        *,
        starts_at: float,
        ends_at: float,
        created_by: str,
        comment: str = "",
        silence_id: str | None = None,
    ) -> Silence:
        silence = Silence(
            id=silence_id or uuid.uuid4().hex,
            matchers=tuple(matchers),
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
        )
        if not self._write(f"{SILENCES}{silence.id}.json", silence.to_json(), 0):
            raise ConflictError(f"silence {silence.id} already exists")
        return silence

    def list_silences(self, now: float | None = None) -> list[Silence]:
        """All silences, or only those active at ``now``."""
        out = []
        for _, data, _ in self._list(SILENCES):
            s = Silence.from_json(data)
            if now is None or s.active(now):
                out.append(s)
        return sorted(out, key=lambda s: (s.starts_at, s.id))

    def expire_silence(self, silence_id: str, *, now: float) -> bool:
        """End a silence now. False if it does not exist or has already ended."""

        ended: list[bool] = []

        def change(data: State | None) -> State | None:
            ended.clear()
            if data is None or data["ends_at"] <= now:
                return None  # missing, or over already: nothing to end
            ended.append(True)
            return {**data, "ends_at": now}

        self._update(f"{SILENCES}{silence_id}.json", change)
        return bool(ended)

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(
        self, alerts: Iterable[Alert], *, config: AlertingConfig, now: float, instance: str
    ) -> IngestResult:
        batch: dict[str, Alert] = {}
        for a in alerts:  # the last word on each fingerprint wins within a batch
            batch.pop(a.fingerprint, None)
            batch[a.fingerprint] = a
        result = IngestResult()
        if not batch:
            return result
        silences = self.list_silences(now)
        listed = self._groups() if config.rules else None
        known = {name: (data, gen) for name, data, gen in listed or []}
        stored = [
            a
            for data, _ in known.values()
            for a in alerts_now(data, now)
            if a.fingerprint not in batch
        ]
        firing = [a for a in stored + list(batch.values()) if a.status == "firing"]
        per_group: dict[str, list[tuple[Alert, Any, bool, bool]]] = {}
        keys: dict[str, tuple[str, Any, Alert]] = {}
        for a in batch.values():
            sil = any(s.matches(a, now) for s in silences)
            inh = inhibited(a, firing, config.rules)
            for m in route_alert(a, config):
                key = m.group_key(a)
                gid = group_id(key)
                per_group.setdefault(gid, []).append((a, m, sil, inh))
                keys.setdefault(gid, (key, m, a))

        for gid, items in per_group.items():
            key, match, first = keys[gid]
            counts: dict[str, int] = {}

            def change(
                data: State | None,
                items: list[tuple[Alert, Any, bool, bool]] = items,
                key: str = key,
                match: RouteMatch = match,
                first: Alert = first,
                c: dict[str, int] = counts,
            ) -> State | None:
                c.clear()
                state = data or {
                    "key": key,
                    "route_id": match.route_id,
                    "receiver": match.receiver,
                    "group_labels": match.group_labels(first),
                    "alerts": {},
                    "first_seen": None,
                    "last_notified_at": None,
                    "notified": {},
                    "pending": None,
                    "seq": 0,
                    "tombstones": {},
                }
                # Timings follow the current config; the receiver is fixed by the key's route.
                state["group_wait"] = match.group_wait
                state["group_interval"] = match.group_interval
                state["repeat_interval"] = match.repeat_interval
                dirty = data is None
                for a, _m, sil, inh in items:
                    outcome = _apply(state, a, sil, inh, now)
                    c[outcome] = c.get(outcome, 0) + 1
                    if sil:
                        c["silenced"] = c.get("silenced", 0) + 1
                    elif inh:
                        c["inhibited"] = c.get("inhibited", 0) + 1
                    dirty = dirty or outcome in ("new", "updated", "closed_early")
                if not dirty or not (state["alerts"] or c.get("closed_early")):
                    return None
                state["updated_at"] = now
                state["updated_by"] = instance
                return state

            name = GROUPS + gid + ".json"
            before = known.get(name)
            got = gcs.update_json(
                self.bucket,
                name,
                functools.partial(_on_data, change),
                attempts=self.max_attempts,
                start=None if before is None else gcs.Stored(before[0], before[1]),
            )
            if got.data is None:
                known.pop(name, None)
            else:
                known[name] = (got.data, got.generation)
            if counts.get("new") or counts.get("updated"):
                result.changed_groups.append(gid)
            result.new += counts.get("new", 0)
            result.updated += counts.get("updated", 0)
            result.unchanged += counts.get("unchanged", 0)
            result.ignored += counts.get("ignored", 0) + counts.get("closed_early", 0)
            result.silenced += counts.get("silenced", 0)
            result.inhibited += counts.get("inhibited", 0)
        result.snapshot = Snapshot(
            silences,
            None if listed is None else [(n, d, g) for n, (d, g) in sorted(known.items())],
        )
        return result

    # -- flush: claim → send → confirm ------------------------------------------------------------
    def flush_due(
        self,
        *,
        config: AlertingConfig,
        now: float,
        instance: str,
        send: Send,
        snapshot: Snapshot | None = None,
    ) -> FlushResult:
        """Claim, send and confirm every due group. ``snapshot``: what an ingest in the same
        call read (at the same ``now``), instead of listing and reading again."""
        result = FlushResult()
        silences = self.list_silences(now) if snapshot is None else snapshot.silences
        groups = self._groups() if snapshot is None or snapshot.groups is None else snapshot.groups
        firing = [a for _, data, _ in groups for a in alerts_now(data, now) if a.status == "firing"]

        def refresh(state: State) -> State:
            expire(state, now)
            for fp, rec in state["alerts"].items():
                a = alert_from_state(fp, rec)
                rec["silenced"] = any(s.matches(a, now) for s in silences)
                rec["inhibited"] = inhibited(a, firing, config.rules)
            return state

        for name, data, gen in groups:
            gid = name.removeprefix(GROUPS).removesuffix(".json")
            claim = self._claim(name, gid, gcs.Stored(data, gen), refresh, now, instance, result)
            if claim is None:
                continue
            self._send_and_confirm(name, gid, claim, config, now, instance, send, result)
        return result

    def _claim(
        self,
        name: str,
        gid: str,
        start: gcs.Stored[State],
        refresh: Callable[[State], State],
        now: float,
        instance: str,
        result: FlushResult,
    ) -> State | None:
        """Claim a due notification of one group by compare-and-swap (from the state listed,
        ``start``; fresh state after a lost race). The claimed state, or None: nothing due, a
        fresh claim held elsewhere, the group gone, or every race lost."""
        seen: dict[str, Any] = {}

        def change(stored: gcs.Stored[Any] | None) -> State | None:
            seen.clear()
            if stored is None:
                return None  # the group is gone (housekeeping)
            before = _muting(stored.data)
            state = refresh(stored.data)
            pending = state.get("pending")
            if pending and now - float(pending["claimed_at"]) < self.lease:
                seen["skipped"] = True
                return None
            if not pending and not due(state, now):
                if _muting(state) != before:
                    seen["muting"] = (state, stored.generation)
                return None
            view = to_send(state)
            seq = int(pending["seq"]) if pending else int(state.get("seq", 0)) + 1
            state["seq"] = seq
            state["pending"] = (
                {
                    "seq": seq,
                    "claimed_at": now,
                    "claimed_by": instance,
                    "digest": digest(view),
                    "view": view,
                }
                if view
                else None
            )
            seen["claim"] = state if view else None
            seen["pending"] = pending
            return state

        try:
            got = gcs.update_json(
                self.bucket, name, change, attempts=self.max_attempts, start=start
            )
        except ConflictError:
            return None  # every race lost: the winners hold the claim
        if seen.get("skipped"):
            result.skipped_claimed += 1
        if "muting" in seen:
            # Nothing to send, but who is muted changed (an inhibiting alert began firing after
            # this one arrived): record it, best effort (one try), so the state tells operators
            # why nothing was sent.
            state, generation = seen["muting"]
            self._write(name, state, generation)
        if got.written is None:
            return None
        pending = seen["pending"]
        if pending:
            result.taken_over += 1
            log.warning(
                "re-sending a stale notification claim",
                extra=fields(group=gid, seq=got.data["seq"], previous=pending.get("claimed_by")),
            )
        claim: State | None = seen["claim"]
        return claim

    def _send_and_confirm(
        self,
        name: str,
        gid: str,
        claim: dict[str, Any],
        config: AlertingConfig,
        now: float,
        instance: str,
        send: Send,
        result: FlushResult,
    ) -> None:
        seq = claim["pending"]["seq"]
        message = {**render_message(claim), "seq": seq}
        try:
            delivery = send(config.receiver(claim["receiver"]), message)
        except Exception as exc:
            # Like a crash: the claim stays, and after the lease another flush re-sends.
            log.exception("sending a notification failed", extra=fields(group=gid, seq=seq))
            result.failed.append({"group": gid, "seq": seq, "error": repr(exc)})
            return
        sent_view: dict[str, str] = claim["pending"]["view"]

        applied = [False]

        def confirm(data: State | None) -> State | None:
            pend = (data or {}).get("pending") or {}
            applied[0] = pend.get("claimed_by") == instance and pend.get("seq") == seq
            if not applied[0]:
                return None  # taken over: the new claimant's send and confirm win
            assert data is not None
            data["pending"] = None
            if not delivery.ok:
                # Not sent: release the claim; the next flush tries again (never lost).
                data["last_failure"] = {"at": now, "error": delivery.error, "seq": seq}
                data["seq"] = seq - 1
                return data
            expire(data, now)
            data["last_notified_at"] = now
            data["notified"] = {fp: s for fp, s in sent_view.items() if s == "firing"}
            tomb = data.setdefault("tombstones", {})
            for fp, rec in list(data["alerts"].items()):
                # Resolved alerts go once they were sent as resolved, or if never sent firing.
                if (
                    rec["status"] == "resolved"
                    and data["notified"].get(fp) != "firing"
                    and (sent_view.get(fp) == "resolved" or fp not in sent_view)
                ):
                    del data["alerts"][fp]
                    tomb[fp] = rec.get("ends_at") or now
            if not data["alerts"]:
                # An empty group starts over, with group_wait, like a new Alertmanager group.
                data.update(first_seen=None, last_notified_at=None, notified={})
            data["updated_at"] = now
            return data

        self._update(name, confirm)
        if not applied[0]:
            result.lost_confirm += 1
            log.warning("our notification claim was taken over", extra=fields(group=gid, seq=seq))
        if not delivery.ok:
            result.failed.append({"group": gid, "seq": seq, **delivery.to_json()})
            return
        record = {
            "group": gid,
            "key": claim["key"],
            "seq": seq,
            "receiver": claim["receiver"],
            "sent_at": now,
            "instance": instance,
            "digest": claim["pending"]["digest"],
            "alerts": sent_view,
            "result": delivery.to_json(),
        }
        self._write(f"{NFLOG}{gid}-{seq:08d}.json", record, 0)
        result.sent.append({"group": gid, "seq": seq, "receiver": claim["receiver"]})

    def nflog(self) -> list[dict[str, Any]]:
        out = []
        for name in self._names(NFLOG):
            data, _ = self._read(name)
            if data is not None:
                out.append(data)
        return sorted(out, key=lambda r: (r["sent_at"], r["group"], r["seq"]))

    # -- housekeeping ---------------------------------------------------------------------------
    def purge(self, *, now: float, older_than: float = 86400.0) -> dict[str, int]:
        """Delete expired silences, old nflog entries, empty groups and old tombstones."""
        cutoff = now - older_than
        counts = {"silences": 0, "nflog": 0, "groups": 0}

        def delete(name: str, gen: int) -> bool:
            return gcs.delete_if(self.bucket, name, gen)

        for name in self._names(SILENCES):
            data, gen = self._read(name)
            if data is not None and data["ends_at"] < cutoff and delete(name, gen):
                counts["silences"] += 1
        for name in self._names(NFLOG):
            data, gen = self._read(name)
            if data is not None and data["sent_at"] < cutoff and delete(name, gen):
                counts["nflog"] += 1
        for name, data, gen in self._groups():
            if (
                not data["alerts"]
                and not data.get("pending")
                and data.get("updated_at", 0) < cutoff
                and delete(name, gen)
            ):
                counts["groups"] += 1
                continue
            if any(t < cutoff for t in data.get("tombstones", {}).values()):

                def prune(d: State | None) -> State | None:
                    if d is None:
                        return None
                    d["tombstones"] = {k: t for k, t in d["tombstones"].items() if t >= cutoff}
                    return d

                self._update(name, prune)
        return counts

    def purge_expired(
        self, *, now: float, older_than: timedelta, dry_run: bool = False
    ) -> list[str]:
        """Housekeeping's sweep of router state; returns the object names deleted (or, with
        ``dry_run``, that would be). Removed, once ``older_than`` has passed:

        * silences that ended more than ``older_than`` ago;
        * notification-log records sent more than ``older_than`` ago;
        * groups with nothing left to say — no pending claim, no firing alert (after model-event
          timeouts), no resolve still owed to a receiver — whose last activity (update,
          notification, alert end) is older than ``older_than``. A group still owing a resolve
          after that long is kept: it shows a receiver that has been failing.

        Claims are not separate objects (``pending`` inside a group); a stale one is taken over
        by the next flush, so the sweep never touches a group holding one. Every delete is
        conditional on the generation inspected: a router writing the object meanwhile wins.
        """
        cutoff = now - older_than.total_seconds()
        out: list[str] = []

        def drop(name: str, gen: int) -> None:
            if dry_run or gcs.delete_if(self.bucket, name, gen):
                out.append(name)

        for name in self._names(SILENCES):
            data, gen = self._read(name)
            if data is not None and float(data["ends_at"]) < cutoff:
                drop(name, gen)
        for name in self._names(NFLOG):
            data, gen = self._read(name)
            if data is not None and float(data["sent_at"]) < cutoff:
                drop(name, gen)
        for name, data, gen in self._groups():
            if data.get("pending"):
                continue
            state = expire(copy.deepcopy(data), now)
            alerts = state.get("alerts", {})
            if any(rec["status"] == "firing" for rec in alerts.values()):
                continue
            if to_send(state):
                continue  # a resolve is still owed
            times = [
                data.get("updated_at"),
                data.get("last_notified_at"),
                data.get("first_seen"),
                *(rec.get("ends_at") for rec in alerts.values()),
                *(rec.get("updated_at") for rec in alerts.values()),
            ]
            last = max((float(t) for t in times if t is not None), default=0.0)
            if last < cutoff:
                drop(name, gen)
        return out

    # -- read-only query (`warden alerts`) -------------------------------------------------------
    def groups_view(self, *, config: AlertingConfig, now: float) -> list[GroupView]:
        """Every group as a flush at ``now`` would see it, writing nothing: model events past
        their timeout resolved, each alert's muting re-evaluated against the silences active at
        ``now`` and ``config``'s inhibit rules (what a flush records before deciding), with the
        silences and the firing alerts that mute it, and when and why the group will next
        notify. Sorted by group labels, then receiver and route."""
        silences = self.list_silences(now)
        groups = self._groups()
        firing = [a for _, data, _ in groups for a in alerts_now(data, now) if a.status == "firing"]
        out = []
        for name, data, _ in groups:
            state = expire(copy.deepcopy(data), now)
            notified = state.get("notified") or {}
            views = []
            for fp, rec in state["alerts"].items():
                a = alert_from_state(fp, rec)
                silenced_by = tuple(s.id for s in silences if s.matches(a, now))
                inhibited_by: tuple[str, ...] = ()
                if inhibited(a, firing, config.rules):
                    # ``inhibited`` asks "any source?"; asked per source it names them.
                    inhibited_by = tuple(
                        sorted({s.fingerprint for s in firing if inhibited(a, [s], config.rules)})
                    )
                rec["silenced"], rec["inhibited"] = bool(silenced_by), bool(inhibited_by)
                views.append((a, silenced_by, inhibited_by, notified.get(fp) == "firing"))
            sending = to_send(state)
            alerts = tuple(
                AlertView(
                    fingerprint=a.fingerprint,
                    status=a.status,
                    labels=a.labels,
                    annotations=a.annotations,
                    starts_at=a.starts_at,
                    ends_at=a.ends_at,
                    source=a.source,
                    silenced_by=sil,
                    inhibited_by=inh,
                    notified=was,
                    will_send=sending.get(a.fingerprint),
                )
                for a, sil, inh, was in sorted(views, key=_alert_order)
            )
            at, reason = next_notification(state, now, self.lease)
            pending = state.get("pending")
            out.append(
                GroupView(
                    id=name.removeprefix(GROUPS).removesuffix(".json"),
                    key=str(state.get("key", "")),
                    route_id=str(state.get("route_id", "")),
                    receiver=str(state.get("receiver", "")),
                    group_labels=dict(state.get("group_labels") or {}),
                    alerts=alerts,
                    tombstones={k: float(v) for k, v in (state.get("tombstones") or {}).items()},
                    first_seen=_opt_float(state.get("first_seen")),
                    last_notified_at=_opt_float(state.get("last_notified_at")),
                    last_failure=state.get("last_failure"),
                    pending=None
                    if not pending
                    else {
                        "seq": pending.get("seq"),
                        "claimed_at": pending.get("claimed_at"),
                        "claimed_by": pending.get("claimed_by"),
                        "alerts": pending.get("view", {}),
                    },
                    group_wait=float(state.get("group_wait", 0.0)),
                    group_interval=float(state.get("group_interval", 0.0)),
                    repeat_interval=float(state.get("repeat_interval", 0.0)),
                    next_at=at,
                    next_reason=reason,
                )
            )
        return sorted(out, key=lambda g: (sorted(g.group_labels.items()), g.receiver, g.route_id))


def _muting(state: Mapping[str, Any]) -> dict[str, tuple[Any, Any, Any]]:
    return {
        fp: (rec.get("silenced"), rec.get("inhibited"), rec.get("status"))
        for fp, rec in state.get("alerts", {}).items()
    }


def _apply(state: dict[str, Any], a: Alert, sil: bool, inh: bool, now: float) -> str:
    """Fold one alert into a group's state: 'new', 'updated', 'unchanged' or 'ignored'."""
    alerts = state["alerts"]
    existing = alerts.get(a.fingerprint)
    if existing is None:
        if a.status == "resolved":
            # Nothing was ever said about it, or it is already dropped — or its open is still on
            # the way: Pub/Sub and webhook retries do not keep order. Remember the close, so an
            # open that arrives after it is taken for what it is: over.
            tombs = state.setdefault("tombstones", {})
            ended = a.ends_at if a.ends_at is not None else now
            if float(tombs.get(a.fingerprint, float("-inf"))) >= ended:
                return "ignored"
            tombs[a.fingerprint] = ended
            return "closed_early"
        tomb = state.get("tombstones", {}).get(a.fingerprint)
        if tomb is not None and a.starts_at <= float(tomb):
            return "ignored"  # a late redelivery of an alert that has since resolved
        if not alerts:
            state.update(first_seen=now, last_notified_at=None, notified={})
    rec = {
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "source": a.source,
        "updated_at": now,
        "silenced": sil,
        "inhibited": inh,
    }
    if existing is not None:
        same = (
            existing["status"] == a.status
            and existing["labels"] == a.labels
            and bool(existing.get("silenced")) == sil
            and bool(existing.get("inhibited")) == inh
            and not (  # a re-sent model event extends its timeout
                a.ends_at is not None
                and existing.get("ends_at") is not None
                and a.ends_at > existing["ends_at"]
                and a.status == "firing"
            )
        )
        if same:
            return "unchanged"
        rec["starts_at"] = min(float(existing["starts_at"]), a.starts_at)
    alerts[a.fingerprint] = rec
    return "new" if existing is None else "updated"


# -- the read-only query's views (AlertState.groups_view) ------------------------------------------


@dataclass(frozen=True)
class AlertView:
    """One alert of a group as a flush would see it now."""

    fingerprint: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    source: str
    silenced_by: tuple[str, ...]  # ids of the active silences matching it
    inhibited_by: tuple[str, ...]  # fingerprints of the firing alerts inhibiting it
    notified: bool  # the receiver was last told it fires
    will_send: str | None  # what the group's next notification says of it (None: nothing)

    @property
    def silenced(self) -> bool:
        return bool(self.silenced_by)

    @property
    def inhibited(self) -> bool:
        return bool(self.inhibited_by)

    @property
    def state(self) -> str:
        """``active``, ``silenced``, ``inhibited`` or ``silenced+inhibited``."""
        muted = [n for n, on in (("silenced", self.silenced), ("inhibited", self.inhibited)) if on]
        return "+".join(muted) or "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "state": self.state,
            "silenced": self.silenced,
            "silenced_by": list(self.silenced_by),
            "inhibited": self.inhibited,
            "inhibited_by": list(self.inhibited_by),
            "labels": self.labels,
            "annotations": self.annotations,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "source": self.source,
            "notified": self.notified,
            "will_send": self.will_send,
        }


@dataclass(frozen=True)
class GroupView:
    """One aggregation group, read-only: its alerts (firing first), receiver, what was sent,
    and ``next_at``/``next_reason`` from :func:`next_notification`."""

    id: str
    key: str
    route_id: str
    receiver: str
    group_labels: dict[str, str]
    alerts: tuple[AlertView, ...]
    tombstones: dict[str, float]
    first_seen: float | None
    last_notified_at: float | None
    last_failure: dict[str, Any] | None
    pending: dict[str, Any] | None
    group_wait: float
    group_interval: float
    repeat_interval: float
    next_at: float | None
    next_reason: str

    @property
    def firing(self) -> int:
        return sum(1 for a in self.alerts if a.status == "firing")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "route_id": self.route_id,
            "receiver": self.receiver,
            "group_labels": self.group_labels,
            "alerts": [a.to_json() for a in self.alerts],
            "tombstones": self.tombstones,
            "first_seen": self.first_seen,
            "last_notified_at": self.last_notified_at,
            "last_failure": self.last_failure,
            "pending": self.pending,
            "timings": {
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "next_notification_at": self.next_at,
            "next_notification_reason": self.next_reason,
        }


#: Why a group notifies next (:func:`next_notification`).
NEXT_REASONS = (
    "group_wait",  # the first notification, first_seen + group_wait
    "group_interval",  # changes to send, last_notified_at + group_interval
    "repeat_interval",  # unchanged and firing, last_notified_at + repeat_interval
    "pending_claim",  # being sent: claimed_at + lease is when it is taken over if unconfirmed
    "stale_claim",  # claimed, unconfirmed past the lease: the next flush re-sends it
    "nothing_to_send",  # nothing unmuted fires and no resolve is owed
)


def next_notification(
    state: Mapping[str, Any], now: float, lease: float
) -> tuple[float | None, str]:
    """When a group (refreshed as a flush would) next notifies, and why (:data:`NEXT_REASONS`).
    A time at or before ``now`` means due: the next flush (on the minute tick, or when an alert
    arrives) sends it. Follows :meth:`AlertState.flush_due`: a claim comes first, then
    :func:`~warden.alerts.rules.next_due`."""
    pending = state.get("pending")
    if pending:
        at = float(pending["claimed_at"]) + lease
        return at, "stale_claim" if now >= at else "pending_claim"
    when = next_due(state, now)
    if when is None:
        return None, "nothing_to_send"
    if state.get("last_notified_at") is None:
        return when, "group_wait"
    view = to_send(state)
    notified = state.get("notified") or {}
    changed = any(notified.get(fp) != s for fp, s in view.items()) or any(
        fp not in view for fp in notified
    )
    return when, "group_interval" if changed else "repeat_interval"


def _alert_order(item: tuple[Alert, Any, Any, Any]) -> tuple[bool, str, float, str]:
    a = item[0]
    return (a.status != "firing", a.labels.get("alertname", ""), a.starts_at, a.fingerprint)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
