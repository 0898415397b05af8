"""Alerting state in Cloud Storage, changed only by compare-and-swap (see docs/alerting.md).

Layout under ``_alerting/`` in one bucket::

    groups/<gid>.json           one aggregation group (gid = sha256(group_key)[:32]): its alerts,
                                what was last sent, a claimed-but-unconfirmed notification
                                (``pending``) and tombstones of resolved alerts
    inbox/<gid>/<fp>-<h>.json   create-only: one alert change not yet folded into its group
                                (``h`` digests the change, so a duplicate is a 412, not a write)
    due/<minute>/<gid>          create-only, empty: look at this group by this minute
    mutes.json                  the silences and the firing inhibition sources, changed by CAS;
                                each call revalidates its cached copy with one metadata read
    nflog/<gid>-<epoch>-<seq>.json   create-only record of each sent notification

Work per call does not grow with the number of groups:

* **Ingest** reads each touched group (one read) and only for a new or changed alert creates an
  inbox object and a ``due`` marker for the current minute. The group itself is not written, so
  writers of a hot group never queue on one object (Cloud Storage sustains about one write per
  second to an object). A duplicate costs the read and no write (not even ``mutes.json``'s
  generation: its muting is taken as the group recorded it).
* **Flush** of one group folds its inbox into it and claims the due notification in one
  compare-and-swap, then sends and confirms. A request flushes only the groups it touched, and
  only when due. The tick (:meth:`AlertState.flush_due`) lists the ``due`` markers up to the
  current minute (``endOffset``): O(due groups). Every flush leaves a marker at the group's next
  wake-up (group_wait/interval/repeat, a model event's timeout, a claim's lease, a tombstone's
  expiry), so nothing waits on a listing of all groups.

Notifications go claim → send → confirm. The claim is a CAS that sets ``pending``, so of any
number of concurrent instances exactly one sends. The claim holds until ``lease_until``: the
longest send the receiver's settings allow (:func:`~warden.alerts.receivers.send_budget`) plus
:data:`CLAIM_MARGIN`, counted from the claim; only then is it taken over and re-sent (the one
allowed repeat, after a crash between send and confirm). A sender that reaches its send more than
half the margin after the claim does not send (the lease may no longer cover it).

State stays small: a resolved alert leaves its group once said; its tombstone (kept so that a late
redelivery is ignored) expires after :data:`TOMBSTONE_TTL`; the tick deletes a group left with
nothing; housekeeping sweeps old notification records and silences
(:meth:`AlertState.purge_expired`). Storage holds O(active alerts).

Reads, create-only writes, compare-and-swap and conditional deletes all go through
:mod:`warden.store.gcs`, with its one backoff policy and its owner read-back after a 412.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import time
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
from warden.config.alerting import AlertingConfig, Receiver, Rule, matches_all
from warden.errors import ConfigError, ConflictError
from warden.logs import fields
from warden.store import gcs

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

PREFIX = "_alerting/"
GROUPS = PREFIX + "groups/"
INBOX = PREFIX + "inbox/"
DUE = PREFIX + "due/"
MUTES = PREFIX + "mutes.json"
NFLOG = PREFIX + "nflog/"
#: Before 2026-12-07 each silence was its own object here; housekeeping folds them into MUTES.
LEGACY_SILENCES = PREFIX + "silences/"

#: How long a resolved alert's tombstone is kept (a redelivery later than this opens it again).
TOMBSTONE_TTL = 86400.0
#: Added to a receiver's send budget in a claim's lease: the time between the call's clock
#: reading and its send (ingest, fold, claim), and clock skew between instances.
CLAIM_MARGIN = 30.0
#: Compare-and-swap attempts of a flush on the request path: a lost race means another instance
#: is flushing this group; the marker left by the change lets the tick finish what is left.
REQUEST_ATTEMPTS = 3
#: A group with a muted firing alert is looked at again this often: the silence may have been
#: expired early, or the inhibiting alert resolved in another group.
MUTED_RECHECK = 60.0

#: What :func:`_apply` calls a change worth recording.
CHANGES = ("new", "updated", "closed_early")

Send = Callable[[Receiver, dict[str, Any]], DeliveryResult]
State = dict[str, Any]
Change = Callable[[State | None], State | None]


@dataclass(frozen=True)
class Mutes:
    """``mutes.json`` as read at ``generation`` (0: no object yet): the silences, and the firing
    alerts that match an inhibit rule's source side (``fingerprint → labels, starts_at,
    ends_at, group``), kept up to date by every fold of their group."""

    generation: int = 0
    silences: tuple[Silence, ...] = ()
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], generation: int) -> Mutes:
        return cls(
            generation,
            tuple(Silence.from_json(s) for s in (data.get("silences") or {}).values()),
            dict(data.get("sources") or {}),
        )

    def silenced(self, alert: Alert, now: float) -> bool:
        return any(s.matches(alert, now) for s in self.silences)

    def firing_sources(self, now: float, *, besides: str | None = None) -> list[Alert]:
        """The inhibition sources firing at ``now`` (``besides``: leave out this group's)."""
        out = []
        for fp, src in self.sources.items():
            ends = src.get("ends_at")
            if src.get("group") == besides or (ends is not None and float(ends) <= now):
                continue
            out.append(
                Alert(
                    labels=dict(src["labels"]),
                    annotations={},
                    status="firing",
                    starts_at=float(src["starts_at"]),
                    ends_at=None if ends is None else float(ends),
                    fingerprint=fp,
                    source=src.get("source", "monitoring"),
                )
            )
        return out


@dataclass(frozen=True)
class Touched:
    """A group an ingest touched: as it read it (``stored``; None: no group object yet), and
    whether the same call should flush it (due now, holding a claim past its lease, or with a
    second unfolded change of one alert: then it is folded, and sent only if due)."""

    gid: str
    stored: gcs.Stored[State] | None
    flush: bool
    changed: bool = False  # a change was recorded (the flush marks the group if it fails)


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
    touched: dict[str, Touched] = field(default_factory=dict)
    mutes: Mutes | None = None

    def count(self, outcome: str, silenced: bool, inhibited: bool) -> None:
        if outcome == "closed_early":
            self.ignored += 1
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)
        if silenced:
            self.silenced += 1
        elif inhibited:
            self.inhibited += 1

    @property
    def due(self) -> list[Touched]:
        return [t for t in self.touched.values() if t.flush]


@dataclass
class FlushResult:
    sent: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped_claimed: int = 0  # another instance holds a claim within its lease
    taken_over: int = 0  # claims past their lease, re-sent
    lost_confirm: int = 0  # our claim was taken over before we confirmed
    folded: int = 0  # inbox objects folded into their groups
    groups: int = 0  # groups looked at
    deleted_groups: int = 0  # groups left with nothing, deleted
    contended: int = 0  # request-path flushes left to the instance that won the race


def _lease_until(pending: Mapping[str, Any], default: float) -> float:
    until = pending.get("lease_until")
    return float(until) if until is not None else float(pending["claimed_at"]) + default


def _alert_json(a: Alert) -> dict[str, Any]:
    return {
        "fingerprint": a.fingerprint,
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "source": a.source,
    }


def _alert_from_json(data: Mapping[str, Any]) -> Alert:
    return alert_from_state(str(data["fingerprint"]), data)


def _item_alerts(item: Mapping[str, Any]) -> list[Alert]:
    return [_alert_from_json(a) for a in item.get("alerts") or [item["alert"]]]


def _change_digest(a: Alert) -> str:
    body = json.dumps(_alert_json(a), sort_keys=True, default=str).encode()
    return hashlib.sha256(body).hexdigest()[:16]


def _group_meta(key: str, match: RouteMatch, first: Alert) -> dict[str, Any]:
    return {
        "key": key,
        "route_id": match.route_id,
        "receiver": match.receiver,
        "group_labels": match.group_labels(first),
        "group_wait": match.group_wait,
        "group_interval": match.group_interval,
        "repeat_interval": match.repeat_interval,
    }


def _new_group(meta: Mapping[str, Any], now: float) -> State:
    return {
        "key": meta["key"],
        "route_id": meta["route_id"],
        "receiver": meta["receiver"],
        "group_labels": dict(meta["group_labels"]),
        "alerts": {},
        "first_seen": None,
        "last_notified_at": None,
        "notified": {},
        "pending": None,
        "seq": 0,
        "epoch": int(now),
        "tombstones": {},
    }


def _set_timings(state: State, meta: Mapping[str, Any]) -> None:
    # Timings follow the current config; the receiver is fixed by the key's route.
    for k in ("group_wait", "group_interval", "repeat_interval"):
        state[k] = meta[k]


def _is_source(labels: Mapping[str, str], rules: Iterable[Rule]) -> bool:
    return any(matches_all(source, labels) for source, _target, _equal in rules)


class AlertState:
    """``client`` is a ``google.cloud.storage.Client``; ``lease`` is the shortest a claim holds
    (a receiver whose send can take longer gets a longer one)."""

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
        self._mutes: Mutes | None = None  # revalidated by generation on every call
        # inbox objects this instance wrote (name → generation, content): a fold in the same
        # call needs no read of them
        self._own: dict[str, tuple[int, State]] = {}

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
        return [b.name for b in self._listing(prefix)]

    def _listing(self, prefix: str, end: str | None = None) -> list[Any]:
        return list(self._client.list_blobs(self.bucket_name, prefix=prefix, end_offset=end))

    def _groups(self) -> list[tuple[str, State, int]]:
        """Every group (read one by one): for housekeeping and the read-only query, never on
        the routing path."""
        out = []
        for name in self._names(GROUPS):
            data, gen = self._read(name)
            if data is not None:
                out.append((name, data, gen))
        return out

    def _update(self, name: str, change: Change) -> gcs.Updated:
        """Read-modify-CAS until it sticks (:func:`warden.store.gcs.update_json`). ``change``
        returns the new object, or None for "no write needed"; it must be pure (it may run
        several times)."""
        return gcs.update_json(
            self.bucket,
            name,
            lambda stored: change(None if stored is None else stored.data),
            attempts=self.max_attempts,
        )

    def _mark(self, gid: str, at: float) -> str:
        """Leave a ``due`` marker for ``gid`` in ``at``'s minute (create-only; one that exists
        already is as good). Returns its name."""
        name = f"{DUE}{int(at // 60):010d}/{gid}"
        gcs.create(self.bucket, name, b"", content_type="text/plain", read_back=False)
        return name

    # -- silences and inhibition sources: mutes.json --------------------------------------------
    def mutes(self) -> Mutes:
        """The silences and inhibition sources: the cached copy if ``mutes.json``'s generation
        has not moved (one metadata read), else read again."""
        generation = gcs.generation(self.bucket, MUTES)
        held = self._mutes
        if held is not None and held.generation == generation:
            return held
        got = gcs.read_json(self.bucket, MUTES) if generation else None
        mutes = Mutes() if got is None else Mutes.from_json(got.data, got.generation)
        self._mutes = mutes
        return mutes

    def _change_mutes(self, change: Change) -> Mutes:
        got = self._update(MUTES, change)
        mutes = Mutes() if got.data is None else Mutes.from_json(got.data, got.generation)
        self._mutes = mutes
        return mutes

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
        clash: list[bool] = []

        def change(data: State | None) -> State | None:
            clash.clear()
            data = data or {"silences": {}, "sources": {}}
            if silence.id in data["silences"]:
                if data["silences"][silence.id] == silence.to_json():
                    return None  # our own add, retried
                clash.append(True)
                return None
            data["silences"][silence.id] = silence.to_json()
            return data

        self._change_mutes(change)
        if clash:
            raise ConflictError(f"silence {silence.id} already exists")
        return silence

    def list_silences(self, now: float | None = None) -> list[Silence]:
        """All silences, or only those active at ``now``."""
        out = [s for s in self.mutes().silences if now is None or s.active(now)]
        return sorted(out, key=lambda s: (s.starts_at, s.id))

    def expire_silence(self, silence_id: str, *, now: float) -> bool:
        """End a silence now. False if it does not exist or has already ended."""
        ended: list[bool] = []

        def change(data: State | None) -> State | None:
            ended.clear()
            found = (data or {}).get("silences", {}).get(silence_id)
            if found is None or found["ends_at"] <= now:
                return None  # missing, or over already: nothing to end
            assert data is not None
            ended.append(True)
            data["silences"][silence_id] = {**found, "ends_at": now}
            return data

        self._change_mutes(change)
        return bool(ended)

    def _sync_sources(
        self,
        gid: str,
        alerts: Iterable[Alert],
        rules: list[Rule],
        now: float,
        *,
        whole: bool,
    ) -> None:
        """Record in ``mutes.json`` which of ``alerts`` (of group ``gid``) are firing inhibition
        sources, when that changed. ``whole``: ``alerts`` is the whole group (a fold), so a
        source of the group not among them is gone; else only these alerts' entries change (an
        ingest, so that inhibition holds across groups before any fold)."""
        considered = {}
        wanted = {}
        for a in alerts:
            if not _is_source(a.labels, rules):
                continue
            considered[a.fingerprint] = True
            if a.status == "firing" and (a.ends_at is None or a.ends_at > now):
                wanted[a.fingerprint] = {
                    "labels": a.labels,
                    "starts_at": a.starts_at,
                    "ends_at": a.ends_at,
                    "source": a.source,
                    "group": gid,
                }

        def mine(fp: str, src: Mapping[str, Any]) -> bool:
            return src.get("group") == gid and (whole or fp in considered)

        held = {fp: s for fp, s in (self._mutes or Mutes()).sources.items() if mine(fp, s)}
        if held == wanted:
            return

        def change(data: State | None) -> State | None:
            data = data or {"silences": {}, "sources": {}}
            sources = {k: v for k, v in data["sources"].items() if not mine(k, v)}
            sources.update(wanted)
            if sources == data["sources"]:
                return None
            data["sources"] = sources
            return data

        self._change_mutes(change)

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(
        self,
        alerts: Iterable[Alert],
        *,
        config: AlertingConfig,
        now: float,
        instance: str,
        flushing: bool = False,
    ) -> IngestResult:
        """Record ``alerts``: one read per touched group, and for each new or changed alert a
        create-only inbox object and a ``due`` marker. Nothing is sent here. ``flushing``: the
        caller passes :attr:`IngestResult.due` to :meth:`flush_groups` next, which leaves the
        markers of the groups it flushes (one write fewer per change)."""
        batch: dict[str, Alert] = {}
        for a in alerts:  # the last word on each fingerprint wins within a batch
            batch.pop(a.fingerprint, None)
            batch[a.fingerprint] = a
        result = IngestResult()
        if not batch:
            return result
        rules = config.rules
        per_group: dict[str, list[Alert]] = {}
        metas: dict[str, dict[str, Any]] = {}
        for a in batch.values():
            for m in route_alert(a, config):
                key = m.group_key(a)
                gid = group_id(key)
                per_group.setdefault(gid, []).append(a)
                metas.setdefault(gid, _group_meta(key, m, a))
        stored_groups = {
            gid: gcs.read_json(self.bucket, f"{GROUPS}{gid}.json") for gid in per_group
        }

        def as_recorded(gid: str, a: Alert) -> tuple[bool, bool] | None:
            """The alert's muting as its group recorded it, if the alert is a plain duplicate
            of what the group holds (then neither silences nor inhibition need reading)."""
            got = stored_groups[gid]
            if got is None or a.fingerprint not in got.data["alerts"]:
                return None
            data = got.data
            rec = data["alerts"][a.fingerprint]
            flags = bool(rec.get("silenced")), bool(rec.get("inhibited"))
            probe = {**data, "alerts": dict(data["alerts"])}
            return flags if _apply(probe, a, *flags, now) == "unchanged" else None

        recorded = {
            (gid, a.fingerprint): as_recorded(gid, a)
            for gid, items in per_group.items()
            for a in items
        }
        mutes: Mutes | None = None
        if any(flags is None for flags in recorded.values()):
            mutes = result.mutes = self.mutes()  # something changes: muting is decided now
            firing = mutes.firing_sources(now) if rules else []
            firing += [a for a in batch.values() if a.status == "firing"]

        for gid, alerts_of_group in per_group.items():
            items = []
            for a in alerts_of_group:
                flags = recorded[(gid, a.fingerprint)]
                if flags is None:
                    assert mutes is not None
                    flags = mutes.silenced(a, now), bool(rules) and inhibited(a, firing, rules)
                items.append((a, *flags))
            meta = metas[gid]
            stored = stored_groups[gid]
            state = copy.deepcopy(stored.data) if stored is not None else _new_group(meta, now)
            _set_timings(state, meta)
            changed = fold = False
            changes: list[tuple[Alert, str, bool, bool]] = []
            # An alert the group does not know may have its later word waiting in the inbox
            # (say its close, overtaking the open): fold those changes in first. One such alert
            # lists its own changes; several list the group's inbox once.
            unknown = {a.fingerprint for a, _, _ in items if a.fingerprint not in state["alerts"]}
            if len(unknown) == 1:
                earlier = self._inbox(gid, next(iter(unknown)))
            elif unknown:
                earlier = self._inbox(gid)
            else:
                earlier = []
            for _n, _g, item in earlier:
                _set_timings(state, item["group"])
                for was in _item_alerts(item):
                    prev = state["alerts"].get(was.fingerprint) or {}
                    muted = bool(prev.get("silenced")), bool(prev.get("inhibited"))
                    _apply(state, was, *muted, float(item["received_at"]))
            _set_timings(state, meta)
            for a, sil, inh in items:
                outcome = _apply(state, a, sil, inh, now)
                if outcome in CHANGES:
                    changes.append((a, outcome, sil, inh))
                else:
                    result.count(outcome, sil, inh)
            # Waiting changes and a new one: a second change before any fold. Fold the group
            # now, so that a chatty alert never piles up changes for each call to read.
            fold = bool(earlier and changes)
            if changes:
                # One inbox object for the call's changes to this group; if it exists already,
                # the same changes are recorded (duplicates).
                changed = self._record(gid, [a for a, _, _, _ in changes], meta, now, instance)
                for _a, outcome, sil, inh in changes:
                    result.count(outcome if changed else "unchanged", sil, inh)
            expire(state, now)
            pending = state.get("pending")
            flush = fold or (
                now >= _lease_until(pending, self.lease) if pending else due(state, now)
            )
            if changed:
                if not (flush and flushing):  # (else the flush leaves one, or marks on failing)
                    self._mark(gid, now)  # after the inbox object: a marker seen implies it
                result.changed_groups.append(gid)
                if rules:
                    self._sync_sources(gid, [a for a, _, _ in items], rules, now, whole=False)
            result.touched[gid] = Touched(gid, stored, flush, changed)
        return result

    def _record(
        self, gid: str, alerts: list[Alert], meta: Mapping[str, Any], now: float, instance: str
    ) -> bool:
        """Create the inbox object of a call's changes to one group; False if the same changes
        are there already. One change is named by its alert's fingerprint (so that an ingest
        can list one alert's waiting changes); several by ``batch-`` and their digest."""
        body = {
            "alerts": [_alert_json(a) for a in alerts],
            "group": meta,
            "received_at": now,
            "by": instance,
        }
        digest_ = hashlib.sha256("".join(_change_digest(a) for a in alerts).encode()).hexdigest()[
            :16
        ]
        head = alerts[0].fingerprint if len(alerts) == 1 else "batch"
        name = f"{INBOX}{gid}/{head}-{digest_}.json"
        # Named by its content: a 412 means this change is recorded, whoever wrote it.
        written = gcs.create(
            self.bucket, name, gcs.dumps(body), content_type=gcs.JSON_TYPE, read_back=False
        )
        if written is None:
            return False
        if len(self._own) > 1000:
            self._own.clear()
        self._own[name] = (written.generation, json.loads(gcs.dumps(body)))
        return True

    # -- flush: fold → claim → send → confirm ---------------------------------------------------
    def flush_groups(
        self,
        touched: Iterable[Touched],
        *,
        config: AlertingConfig,
        now: float,
        instance: str,
        send: Send,
        mutes: Mutes | None = None,
    ) -> FlushResult:
        """Flush the groups an ingest touched and found due (the request path): a lost race is
        left to the instance that won it, and to the tick."""
        result = FlushResult()
        touched = list(touched)
        if touched and mutes is None:
            mutes = self.mutes()
        for t in touched:
            try:
                self._flush_one(
                    t.gid,
                    t.stored,
                    config=config,
                    now=now,
                    instance=instance,
                    send=send,
                    mutes=mutes or Mutes(),
                    result=result,
                    attempts=REQUEST_ATTEMPTS,
                )
            except ConflictError:
                result.contended += 1  # another instance is flushing it; the tick follows up
                if t.changed:
                    self._mark(t.gid, now)
        return result

    def flush_due(
        self,
        *,
        config: AlertingConfig,
        now: float,
        instance: str,
        send: Send,
    ) -> FlushResult:
        """The tick: every group with a ``due`` marker up to ``now``'s minute is folded, and
        claimed, sent and confirmed if due. Cost O(markers), never O(all groups)."""
        result = FlushResult()
        mutes = self.mutes()
        markers: dict[str, list[tuple[str, int]]] = {}
        for blob in self._listing(DUE, f"{DUE}{int(now // 60) + 1:010d}"):
            gid = blob.name.rsplit("/", 1)[1]
            markers.setdefault(gid, []).append((blob.name, int(blob.generation or 0)))
        for gid, found in markers.items():
            try:
                keep = self._flush_one(
                    gid,
                    None,
                    config=config,
                    now=now,
                    instance=instance,
                    send=send,
                    mutes=mutes,
                    result=result,
                    attempts=self.max_attempts,
                )
            except ConflictError:
                continue  # every race lost: the winners flushed it; the marker stays
            for name, generation in found:
                if name != keep:
                    gcs.delete_if(self.bucket, name, generation)
            # A change recorded after the fold listed the inbox may have found our marker in
            # place (so left none); look once more after deleting it.
            if self._names(f"{INBOX}{gid}/"):
                self._mark(gid, now)
        return result

    def _inbox(self, gid: str, fingerprint: str = "") -> list[tuple[str, int, State]]:
        """The group's unfolded changes (only ``fingerprint``'s, if given), oldest first."""
        out = []
        for blob in self._listing(f"{INBOX}{gid}/{fingerprint}"):
            own = self._own.get(blob.name)
            if own is not None and own[0] == int(blob.generation or 0):
                out.append((blob.name, own[0], own[1]))
                continue
            got = gcs.read_json(self.bucket, blob.name)
            if got is not None:
                out.append((blob.name, got.generation, got.data))
        return sorted(out, key=lambda item: (float(item[2]["received_at"]), item[0]))

    def _fold(
        self,
        data: State | None,
        items: list[tuple[str, int, State]],
        *,
        config: AlertingConfig,
        mutes: Mutes,
        gid: str,
        now: float,
    ) -> State | None:
        """The group with its inbox folded in, model events past their timeout resolved, muting
        re-evaluated at ``now``, resolved alerts that were never said dropped, and expired
        tombstones pruned. Pure (``data`` is not changed); None when there is no group."""
        if data is None and not items:
            return None
        state = copy.deepcopy(data) if data is not None else _new_group(items[0][2]["group"], now)
        for _name, _gen, item in items:
            _set_timings(state, item["group"])
            for a in _item_alerts(item):
                prev = state["alerts"].get(a.fingerprint) or {}
                muted = bool(prev.get("silenced")), bool(prev.get("inhibited"))  # see below
                _apply(state, a, *muted, float(item["received_at"]))
        expire(state, now)
        rules = config.rules
        firing = mutes.firing_sources(now, besides=gid) if rules else []
        firing += [a for a in alerts_now(state, now) if a.status == "firing"]
        for fp, rec in state["alerts"].items():
            a = alert_from_state(fp, rec)
            rec["silenced"] = mutes.silenced(a, now)
            rec["inhibited"] = bool(rules) and inhibited(a, firing, rules)
        pending_view = (state.get("pending") or {}).get("view") or {}
        _drop_said(state, now, keep=pending_view)
        tombs = state.get("tombstones") or {}
        state["tombstones"] = {k: t for k, t in tombs.items() if float(t) > now - TOMBSTONE_TTL}
        if not state["alerts"] and not state.get("pending"):
            # An empty group starts over, with group_wait, like a new Alertmanager group.
            state.update(first_seen=None, last_notified_at=None, notified={})
        return state

    def _lease_for(self, config: AlertingConfig, receiver: str) -> float:
        from warden.alerts.receivers import send_budget

        try:
            budget = send_budget(config.receiver(receiver))
        except ConfigError:
            budget = 0.0
        return max(self.lease, budget + CLAIM_MARGIN)

    def _flush_one(
        self,
        gid: str,
        start: gcs.Stored[State] | None,
        *,
        config: AlertingConfig,
        now: float,
        instance: str,
        send: Send,
        mutes: Mutes,
        result: FlushResult,
        attempts: int,
    ) -> str | None:
        """Fold, claim, send and confirm one group; leave a marker at its next wake-up and
        return that marker's name (None: the group needs no visit)."""
        began = time.monotonic()
        name = f"{GROUPS}{gid}.json"
        items = self._inbox(gid)
        result.groups += 1
        seen: dict[str, Any] = {}

        def change(stored: gcs.Stored[Any] | None) -> State | None:
            seen.clear()
            data = None if stored is None else stored.data
            state = self._fold(data, items, config=config, mutes=mutes, gid=gid, now=now)
            if state is None:
                return None
            dirty = state != data
            pending = state.get("pending")
            if pending and now < _lease_until(pending, self.lease):
                seen["skipped"] = True
            elif pending or due(state, now):
                view = to_send(state)
                seq = int(pending["seq"]) if pending else int(state.get("seq", 0)) + 1
                if view:
                    state["seq"] = seq
                    state["pending"] = {
                        "seq": seq,
                        "claimed_at": now,
                        "lease_until": now + self._lease_for(config, state["receiver"]),
                        "claimed_by": instance,
                        "digest": digest(view),
                        "view": view,
                    }
                    seen["claim"] = state
                    seen["pending"] = pending
                    dirty = True
                elif pending:
                    state["pending"] = None  # nothing left to say (all since resolved, unsaid)
                    dirty = True
            if not dirty:
                return None
            state["updated_at"] = now
            state["updated_by"] = instance
            return state

        got = gcs.update_json(self.bucket, name, change, attempts=attempts, start=start)
        for item_name, generation, _ in items:  # folded (or already reflected): done with
            gcs.delete_if(self.bucket, item_name, generation)
            self._own.pop(item_name, None)
        result.folded += len(items)
        if seen.get("skipped"):
            result.skipped_claimed += 1
        state: State | None = got.data
        generation = got.generation
        claim = seen.get("claim") if got.written is not None else None
        marker: str | None = None
        marked_at: float | None = None  # the minute of the marker left before sending
        if claim is not None:
            if seen["pending"]:
                result.taken_over += 1
                log.warning(
                    "re-sending a notification whose claim outlived its lease",
                    extra=fields(
                        group=gid, seq=claim["seq"], previous=seen["pending"].get("claimed_by")
                    ),
                )
            # One marker before sending, by the lease's end (if we die before confirming, the
            # tick re-sends) or the wake-up a confirmed send leads to, if that comes first.
            lease_until = float(claim["pending"]["lease_until"])
            after = copy.deepcopy(claim)
            _confirm(after, now, claim["pending"]["view"])
            ahead = None if _empty(after) else _next_wake(after, now, self.lease)
            marked_at = lease_until if ahead is None else min(lease_until, ahead)
            marker = self._mark(gid, max(marked_at, now))
            confirmed = self._send_and_confirm(
                name, gid, claim, config, now, instance, send, result, began
            )
            if confirmed is not None:
                state, generation = confirmed
        if rules := config.rules:
            self._sync_sources(gid, alerts_now(state or {}, now), rules, now, whole=True)
        if state is None:
            return None
        if _empty(state):
            if generation and gcs.delete_if(self.bucket, name, generation):
                result.deleted_groups += 1
            return None
        wake = _next_wake(state, now, self.lease)
        if wake is not None and (
            marked_at is None or int(max(wake, now) // 60) < int(max(marked_at, now) // 60)
        ):
            marker = self._mark(gid, max(wake, now))  # none yet, or sooner than the one left
        return marker

    def _send_and_confirm(
        self,
        name: str,
        gid: str,
        claim: State,
        config: AlertingConfig,
        now: float,
        instance: str,
        send: Send,
        result: FlushResult,
        began: float,
    ) -> tuple[State, int] | None:
        """Send the claimed notification and confirm it; the group as confirmed, or None when
        the send did not happen or the confirm was not ours."""
        seq = claim["pending"]["seq"]
        if time.monotonic() - began > CLAIM_MARGIN / 2:
            log.warning(
                "not sending: the claim is too old to be sure its lease covers the send",
                extra=fields(group=gid, seq=seq),
            )
            return None
        message = {**render_message(claim), "seq": seq}
        try:
            delivery = send(config.receiver(claim["receiver"]), message)
        except Exception as exc:
            # Like a crash: the claim stays, and after the lease another flush re-sends.
            log.exception("sending a notification failed", extra=fields(group=gid, seq=seq))
            result.failed.append({"group": gid, "seq": seq, "error": repr(exc)})
            return None
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
            _confirm(data, now, sent_view)
            return data

        got = self._update(name, confirm)
        if not applied[0]:
            result.lost_confirm += 1
            log.warning("our notification claim was taken over", extra=fields(group=gid, seq=seq))
        if not delivery.ok:
            result.failed.append({"group": gid, "seq": seq, **delivery.to_json()})
            return (got.data, got.generation) if got.data is not None else None
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
        epoch = int(claim.get("epoch", 0))
        self._write(f"{NFLOG}{gid}-{epoch:010d}-{seq:08d}.json", record, 0)
        result.sent.append({"group": gid, "seq": seq, "receiver": claim["receiver"]})
        return (got.data, got.generation) if got.data is not None else None

    def nflog(self) -> list[dict[str, Any]]:
        out = []
        for name in self._names(NFLOG):
            data, _ = self._read(name)
            if data is not None:
                out.append(data)
        return sorted(out, key=lambda r: (r["sent_at"], r["group"], r["seq"]))

    # -- housekeeping ---------------------------------------------------------------------------
    def _drop_silences(self, over: Callable[[Silence], bool], dry_run: bool = False) -> list[str]:
        """Remove the silences ``over`` picks from ``mutes.json``; their ids."""
        picked = sorted(s.id for s in self.mutes().silences if over(s))
        if not picked or dry_run:
            return picked

        def change(data: State | None) -> State | None:
            silences = (data or {}).get("silences") or {}
            left = {k: v for k, v in silences.items() if k not in picked}
            if left == silences:
                return None
            assert data is not None
            data["silences"] = left
            return data

        self._change_mutes(change)
        return picked

    def _adopt_legacy_silences(self, dry_run: bool) -> None:
        """Silences stored one object each (before 2026-12-07) move into ``mutes.json``."""
        for name in self._names(LEGACY_SILENCES):
            data, gen = self._read(name)
            if data is None or dry_run:
                continue
            silence = Silence.from_json(data)
            with contextlib.suppress(ConflictError):  # moved already, by an earlier sweep
                self.add_silence(
                    silence.matchers,
                    starts_at=silence.starts_at,
                    ends_at=silence.ends_at,
                    created_by=silence.created_by,
                    comment=silence.comment,
                    silence_id=silence.id,
                )
            gcs.delete_if(self.bucket, name, gen)

    def purge_expired(
        self, *, now: float, older_than: timedelta, dry_run: bool = False
    ) -> list[str]:
        """Housekeeping's sweep of router state; returns what it deleted (or, with ``dry_run``,
        would): object names, and ``mutes.json#silence=<id>`` for silences. Removed, once
        ``older_than`` has passed:

        * silences that ended more than ``older_than`` ago;
        * notification-log records sent more than ``older_than`` ago;
        * groups with nothing left to say — no pending claim, no firing alert (after model-event
          timeouts), no resolve still owed to a receiver — whose last activity (update,
          notification, alert end) is older than ``older_than``. A group still owing a resolve
          after that long is kept: it shows a receiver that has been failing.

        The sweep also re-marks every group it keeps that has a wake-up ahead (or an unfolded
        inbox), so a marker lost to a crash costs at most a day. Every delete is conditional on
        the generation inspected: a router writing the object meanwhile wins.
        """
        cutoff = now - older_than.total_seconds()
        out: list[str] = []

        def drop(name: str, gen: int) -> bool:
            if dry_run or gcs.delete_if(self.bucket, name, gen):
                out.append(name)
                return True
            return False

        self._adopt_legacy_silences(dry_run)
        gone = self._drop_silences(lambda s: s.ends_at < cutoff, dry_run=dry_run)
        out += [f"{MUTES}#silence={sid}" for sid in gone]
        for name in self._names(NFLOG):
            data, gen = self._read(name)
            if data is not None and float(data["sent_at"]) < cutoff:
                drop(name, gen)
        inboxes = {n.removeprefix(INBOX).split("/", 1)[0] for n in self._names(INBOX)}
        for name, data, gen in self._groups():
            gid = name.removeprefix(GROUPS).removesuffix(".json")
            if not data.get("pending") and gid not in inboxes:
                state = expire(copy.deepcopy(data), now)
                alerts = state.get("alerts", {})
                firing = any(rec["status"] == "firing" for rec in alerts.values())
                times = [
                    data.get("updated_at"),
                    data.get("last_notified_at"),
                    data.get("first_seen"),
                    *(rec.get("ends_at") for rec in alerts.values()),
                    *(rec.get("updated_at") for rec in alerts.values()),
                ]
                last = max((float(t) for t in times if t is not None), default=0.0)
                if not firing and not to_send(state) and last < cutoff and drop(name, gen):
                    continue
            if dry_run:
                continue
            wake = now if gid in inboxes else _next_wake(data, now, self.lease)
            if wake is not None:
                self._mark(gid, max(wake, now))
        return out

    # -- read-only query (`warden alerts`) -------------------------------------------------------
    def groups_view(self, *, config: AlertingConfig, now: float) -> list[GroupView]:
        """Every group as a flush at ``now`` would see it, writing nothing: its inbox folded in,
        model events past their timeout resolved, each alert's muting re-evaluated against the
        silences active at ``now`` and ``config``'s inhibit rules (what a flush records before
        deciding), with the silences and the firing alerts that mute it, and when and why the
        group will next notify. Sorted by group labels, then receiver and route."""
        mutes = self.mutes()
        inbox: dict[str, list[tuple[str, int, State]]] = {}
        for blob in self._listing(INBOX):
            gid = blob.name.removeprefix(INBOX).split("/", 1)[0]
            got = gcs.read_json(self.bucket, blob.name)
            if got is not None:
                inbox.setdefault(gid, []).append((blob.name, got.generation, got.data))
        stored = {n.removeprefix(GROUPS).removesuffix(".json"): d for n, d, _ in self._groups()}
        folded: dict[str, State] = {}
        for gid in sorted(set(stored) | set(inbox)):
            items = sorted(inbox.get(gid, []), key=lambda i: (float(i[2]["received_at"]), i[0]))
            state = self._fold(
                stored.get(gid), items, config=config, mutes=Mutes(), gid=gid, now=now
            )
            if state is not None:
                folded[gid] = state
        firing = [
            a for state in folded.values() for a in alerts_now(state, now) if a.status == "firing"
        ]
        rules = config.rules
        out = []
        for gid, state in folded.items():
            notified = state.get("notified") or {}
            views = []
            for fp, rec in state["alerts"].items():
                a = alert_from_state(fp, rec)
                silenced_by = tuple(s.id for s in mutes.silences if s.matches(a, now))
                inhibited_by: tuple[str, ...] = ()
                if rules and inhibited(a, firing, rules):
                    # ``inhibited`` asks "any source?"; asked per source it names them.
                    inhibited_by = tuple(
                        sorted({s.fingerprint for s in firing if inhibited(a, [s], rules)})
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
                    id=gid,
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


def _next_wake(state: Mapping[str, Any], now: float, lease: float) -> float | None:
    """When the tick must look at this group again: a claim's lease end, the next notification,
    a firing model event's timeout, a muted alert's recheck (its silence may end or its source
    resolve), a tombstone's expiry. None: no visit needed."""
    pending = state.get("pending")
    times = []
    if pending:
        times.append(_lease_until(pending, lease))
    else:
        when = next_due(state, now)
        if when is not None:
            times.append(when)
    for rec in (state.get("alerts") or {}).values():
        if rec["status"] != "firing":
            continue
        if rec.get("ends_at") is not None:
            times.append(float(rec["ends_at"]))
        if rec.get("silenced") or rec.get("inhibited"):
            times.append(now + MUTED_RECHECK)
    times += [float(t) + TOMBSTONE_TTL for t in (state.get("tombstones") or {}).values()]
    return min(times) if times else None


def _empty(state: Mapping[str, Any]) -> bool:
    """Nothing left: no alert, no claim, no tombstone. The tick deletes such a group."""
    return not state.get("alerts") and not state.get("pending") and not state.get("tombstones")


def _confirm(data: State, now: float, sent_view: Mapping[str, str]) -> None:
    """What a confirmed send does to its group (in place): ``notified`` becomes what was sent
    firing, resolved alerts that were said leave, and an emptied group starts over."""
    data["pending"] = None
    expire(data, now)
    data["last_notified_at"] = now
    data["notified"] = {fp: s for fp, s in sent_view.items() if s == "firing"}
    _drop_said(data, now, keep={})
    if not data["alerts"]:
        # An empty group starts over, with group_wait, like a new Alertmanager group.
        data.update(first_seen=None, last_notified_at=None, notified={})
    data["updated_at"] = now


def _drop_said(state: State, now: float, *, keep: Mapping[str, str]) -> None:
    """Resolved alerts leave the group once sent as resolved, or if never sent firing; each
    leaves a tombstone. ``keep``: fingerprints a claim in flight carries."""
    notified = state.get("notified") or {}
    tomb = state.setdefault("tombstones", {})
    for fp, rec in list(state["alerts"].items()):
        if rec["status"] == "resolved" and notified.get(fp) != "firing" and fp not in keep:
            del state["alerts"][fp]
            tomb[fp] = rec.get("ends_at") or now


def _apply(state: dict[str, Any], a: Alert, sil: bool, inh: bool, now: float) -> str:
    """Fold one alert into a group's state: 'new', 'updated', 'unchanged' or 'ignored'."""
    alerts = state["alerts"]
    existing = alerts.get(a.fingerprint)
    if existing is not None and float(existing.get("updated_at", float("-inf"))) > now:
        return "unchanged"  # an older change than the one recorded (received out of order)
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
        **_alert_json(a),
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
    del rec["fingerprint"]  # the key of the record
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
        at = _lease_until(pending, lease)
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
