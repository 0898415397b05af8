"""Alerting state in Cloud Storage, changed only by compare-and-swap (see docs/alerting.md).

Layout under ``_alerting/`` in one bucket::

    groups/<sha256(group_key)[:32]>.json   one aggregation group: its alerts, what was last sent,
                                           and a claimed-but-unconfirmed notification (pending)
    silences/<id>.json                     create-only; expired by CAS setting ends_at = now
    nflog/<group>-<seq>.json               create-only record of each sent notification

Notifications go claim → send → confirm. The claim is a CAS that sets ``pending``, so of any
number of concurrent instances exactly one sends; a claim older than the lease is taken over
and re-sent (the one allowed repeat, after a crash between send and confirm).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from warden.alerts import (
    Alert,
    DeliveryResult,
    Silence,
    alert_from_state,
    digest,
    due,
    expire,
    group_id,
    inhibited,
    render_message,
    route_alert,
    to_send,
)
from warden.config.alerting import AlertingConfig, Receiver
from warden.errors import ConflictError, IntegrityError
from warden.logs import fields

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

PREFIX = "_alerting/"
GROUPS = PREFIX + "groups/"
SILENCES = PREFIX + "silences/"
NFLOG = PREFIX + "nflog/"

Send = Callable[[Receiver, dict[str, Any]], DeliveryResult]


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


@dataclass
class FlushResult:
    sent: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped_claimed: int = 0  # another instance holds a fresh claim
    taken_over: int = 0  # stale claims re-sent
    lost_confirm: int = 0  # our claim was taken over before we confirmed


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

    @property
    def bucket(self) -> storage.Bucket:
        return self._client.bucket(self.bucket_name)

    # -- small-object primitives ----------------------------------------------------------------
    def _read(self, name: str) -> tuple[dict[str, Any] | None, int]:
        from google.api_core.exceptions import NotFound

        blob = self.bucket.blob(name)
        try:
            raw = blob.download_as_bytes()
        except NotFound:
            return None, 0
        try:
            return json.loads(raw), int(blob.generation or 0)
        except ValueError as exc:
            raise IntegrityError(f"gs://{self.bucket_name}/{name}: not valid JSON: {exc}") from exc

    def _write(self, name: str, data: dict[str, Any], generation: int) -> bool:
        """CAS write (generation 0 = create-only). False if the precondition failed."""
        from google.api_core.exceptions import PreconditionFailed

        blob = self.bucket.blob(name)
        try:
            blob.upload_from_string(
                json.dumps(data, sort_keys=True, default=str),
                content_type="application/json",
                if_generation_match=generation,
            )
        except PreconditionFailed:
            return False
        return True

    def _names(self, prefix: str) -> list[str]:
        return [b.name for b in self._client.list_blobs(self.bucket_name, prefix=prefix)]

    def _groups(self) -> list[tuple[str, dict[str, Any], int]]:
        out = []
        for name in self._names(GROUPS):
            data, gen = self._read(name)
            if data is not None:
                out.append((name, data, gen))
        return out

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(min(0.2, 0.005 * 2**attempt) * random.random())  # noqa: S311 - jitter only

    def _update(self, name: str, change: Callable[[dict[str, Any] | None], dict | None]) -> Any:
        """Read-modify-CAS until it sticks. ``change`` returns the new object, or None for
        "no write needed"; it must be pure (it may run several times)."""
        for attempt in range(self.max_attempts):
            data, gen = self._read(name)
            new = change(copy.deepcopy(data))
            if new is None:
                return data
            if self._write(name, new, gen):
                return new
            self._backoff(attempt)
        raise ConflictError(f"gs://{self.bucket_name}/{name}: lost {self.max_attempts} races")

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
        for name in self._names(SILENCES):
            data, _ = self._read(name)
            if data is not None:
                s = Silence.from_json(data)
                if now is None or s.active(now):
                    out.append(s)
        return sorted(out, key=lambda s: (s.starts_at, s.id))

    def expire_silence(self, silence_id: str, *, now: float) -> bool:
        """End a silence now. False if it does not exist or has already ended."""

        ended: list[bool] = []

        def change(data: dict | None) -> dict | None:
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
        stored = [
            alert_from_state(fp, rec)
            for _, data, _ in (self._groups() if config.rules else [])
            for fp, rec in expire(data, now)["alerts"].items()
            if fp not in batch
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

            def change(data: dict | None, items=items, key=key, match=match, first=first, c=counts):
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

            self._update(GROUPS + gid + ".json", change)
            if counts.get("new") or counts.get("updated"):
                result.changed_groups.append(gid)
            result.new += counts.get("new", 0)
            result.updated += counts.get("updated", 0)
            result.unchanged += counts.get("unchanged", 0)
            result.ignored += counts.get("ignored", 0) + counts.get("closed_early", 0)
            result.silenced += counts.get("silenced", 0)
            result.inhibited += counts.get("inhibited", 0)
        return result

    # -- flush: claim → send → confirm ------------------------------------------------------------
    def flush_due(
        self, *, config: AlertingConfig, now: float, instance: str, send: Send
    ) -> FlushResult:
        result = FlushResult()
        silences = self.list_silences(now)
        groups = self._groups()
        firing = [
            alert_from_state(fp, rec)
            for _, data, _ in groups
            for fp, rec in expire(copy.deepcopy(data), now)["alerts"].items()
            if rec["status"] == "firing"
        ]

        def refresh(state: dict[str, Any]) -> dict[str, Any]:
            expire(state, now)
            for fp, rec in state["alerts"].items():
                a = alert_from_state(fp, rec)
                rec["silenced"] = any(s.matches(a, now) for s in silences)
                rec["inhibited"] = inhibited(a, firing, config.rules)
            return state

        for name, data, gen in groups:
            gid = name.removeprefix(GROUPS).removesuffix(".json")
            claim = None
            for attempt in range(self.max_attempts):
                state = refresh(copy.deepcopy(data))
                pending = state.get("pending")
                if pending and now - float(pending["claimed_at"]) < self.lease:
                    result.skipped_claimed += 1
                    break
                if not pending and not due(state, now):
                    if _muting(state) != _muting(data):
                        # Nothing to send, but who is muted changed (an inhibiting alert began
                        # firing after this one arrived): record it, best effort, so the state
                        # tells operators why nothing was sent.
                        self._write(name, state, gen)
                    break
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
                if self._write(name, state, gen):
                    claim = state if view else None
                    if pending:
                        result.taken_over += 1
                        log.warning(
                            "re-sending a stale notification claim",
                            extra=fields(group=gid, seq=seq, previous=pending.get("claimed_by")),
                        )
                    break
                self._backoff(attempt)
                fresh, gen = self._read(name)
                if fresh is None:
                    break
                data = fresh
            if claim is None:
                continue
            self._send_and_confirm(name, gid, claim, config, now, instance, send, result)
        return result

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

        def confirm(data: dict | None) -> dict | None:
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
        from google.api_core.exceptions import NotFound, PreconditionFailed

        cutoff = now - older_than
        counts = {"silences": 0, "nflog": 0, "groups": 0}

        def delete(name: str, gen: int) -> bool:
            try:
                self.bucket.blob(name).delete(if_generation_match=gen)
            except (NotFound, PreconditionFailed):
                return False
            return True

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

                def prune(d: dict | None) -> dict | None:
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
        from google.api_core.exceptions import NotFound, PreconditionFailed

        cutoff = now - older_than.total_seconds()
        out: list[str] = []

        def drop(name: str, gen: int) -> None:
            if not dry_run:
                try:
                    self.bucket.blob(name).delete(if_generation_match=gen)
                except (NotFound, PreconditionFailed):
                    return
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
