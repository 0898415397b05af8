"""Registry snapshots in the backup bucket, and restores from them.

Layout in the backup bucket (``ID`` is the snapshot id, ``MODEL`` a model's name)::

    snapshots/ID/MODEL/versions/000042/model.joblib    the version's files, byte for byte
    snapshots/ID/MODEL/versions/000042/profile.json
    snapshots/ID/MODEL/versions/000042/manifest.json   the version's manifest, byte for byte
    snapshots/ID/snapshot.json                         written LAST, create-only: the commit point

``snapshot.json`` lists, per model, the alias states (content and the generation they were read
at), the alias history entries and, per version, the sha256 of its manifest and of each file.
A folder without ``snapshot.json`` is an interrupted snapshot: listing and restore ignore it,
and a rerun with the same id completes it (objects already copied are checked and reused).

Why a snapshot is consistent although the registry keeps changing while we copy:

* A manifested version is immutable: its files are create-only and the manifest is written
  after them, so a version we see with a manifest never changes. Versions without a manifest
  (in flight, or abandoned) are skipped.
* Each alias is read once, at one generation, BEFORE versions are listed. An alias only ever
  points at a version whose manifest already existed (``promote`` verifies it), so the champion
  we recorded is always among the versions listed afterwards. History is kept up to that alias
  state's ``seq`` (history objects are create-only, so entries up to it never change); a newer
  move made while we copy is left to the next snapshot.
* ``snapshot.json`` is written last, only after every file was copied and checked; whatever it
  lists is in the folder. Alias state and history live in ``snapshot.json`` itself (not as
  copied objects), so a rerun that completes an interrupted snapshot records the state it read,
  never a stale object left by the interrupted attempt.

Checking copies: every file is downloaded, its sha256 compared with the version's manifest, and
those same bytes are uploaded (create-only). We do not use a server-side copy: GCS computes md5
and crc32c but never sha256, so a rewrite plus checksum comparison proves "backup == source" but
not "source == manifest" — and a registry object that no longer matches its manifest must not be
enshrined in a backup. Checking the sha256 needs the bytes anyway, and Warden's artifacts are
small (kilobytes to tens of megabytes). An object already present in the snapshot folder (a rerun)
is accepted when its md5 equals that of the verified bytes. Restore works the same way in the
other direction: it verifies every file against the snapshot's manifest before it writes the
version's manifest, so a corrupted backup never becomes a visible version.

Not in a snapshot: run-ledger markers, status objects and alert state (``_alerting/``): they are
operational state, not models; a restored registry rebuilds them as jobs run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from warden.errors import ConfigError, ConflictError, IntegrityError, SnapshotNotFound
from warden.logs import fields
from warden.store import gcs
from warden.store.registry import ALIASES, CLAIM, MANIFEST, AliasState, sha256_hex

if TYPE_CHECKING:
    from google.cloud import storage

    from warden.runtime import Runtime

log = logging.getLogger(__name__)

PREFIX = "snapshots/"
SNAPSHOT_MANIFEST = "snapshot.json"
SCHEMA = 1
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


# -- results ---------------------------------------------------------------------------------
@dataclass
class Snapshot:
    """A complete snapshot, as returned by :func:`snapshot`."""

    id: str
    created_at: str
    source_bucket: str
    backup_bucket: str
    code_version: str
    models: dict[str, dict[str, Any]]
    copied: int = 0  # objects written to the backup bucket by this call
    reused: int = 0  # objects an interrupted earlier attempt had already copied
    already_complete: bool = False  # snapshot.json existed: nothing was copied

    @property
    def uri(self) -> str:
        return f"gs://{self.backup_bucket}/{PREFIX}{self.id}/"

    @property
    def skipped(self) -> dict[str, dict[str, str]]:
        """Versions left out because the registry's copy did not match its manifest."""
        return {m: doc["skipped"] for m, doc in self.models.items() if doc.get("skipped")}

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "uri": self.uri,
            "versions": {m: sorted(map(int, d["versions"])) for m, d in self.models.items()},
            "skipped": self.skipped,
        }


@dataclass
class SnapshotInfo:
    id: str
    created_at: str
    models: list[str]
    versions: dict[str, int]  # model → number of versions
    champions: dict[str, int | None]
    code_version: str
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VersionRestore:
    model: str
    version: int
    # restored | would_restore | present | conflict | corrupt | unavailable
    status: str
    detail: str = ""


@dataclass
class AliasRestore:
    model: str
    alias: str
    status: str  # created | would_create | kept | skipped
    version: int | None
    detail: str = ""
    history_restored: int = 0


PROBLEMS = frozenset({"conflict", "corrupt", "unavailable"})


@dataclass
class RestoreReport:
    snapshot_id: str
    source: str
    target_bucket: str
    dry_run: bool
    versions: list[VersionRestore] = field(default_factory=list)
    aliases: list[AliasRestore] = field(default_factory=list)

    def by_status(self, status: str) -> list[VersionRestore]:
        return [v for v in self.versions if v.status == status]

    @property
    def problems(self) -> list[VersionRestore]:
        return [v for v in self.versions if v.status in PROBLEMS]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# -- small storage helpers ---------------------------------------------------------------------
def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_ts(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _dumps(obj: Any) -> bytes:
    # Same serialisation as Registry._dumps, so restored JSON objects are byte-identical.
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - GCS's checksum


def _version_dir(model: str, version: int) -> str:
    return f"{model}/versions/{version:06d}/"  # the registry's layout (registry.py)


def _alias_name(model: str, alias: str) -> str:
    return f"{model}/aliases/{alias}.json"


def _history_prefix(model: str, alias: str) -> str:
    return f"{model}/aliases/history/{alias}/"


def _snap_dir(snapshot_id: str) -> str:
    return f"{PREFIX}{snapshot_id}/"


def _holds(blob: storage.Blob, data: bytes) -> bool:
    """Whether an existing object holds exactly ``data`` (by size and md5, else by content)."""
    if blob.size is not None and int(blob.size) != len(data):
        return False
    if blob.md5_hash:
        return blob.md5_hash == _md5_b64(data)
    return blob.download_as_bytes() == data  # composite objects have no md5


def _put_once(
    bucket: storage.Bucket, name: str, data: bytes, content_type: str | None
) -> tuple[str, storage.Blob]:
    """Create ``name`` unless it exists: "created", "same" (holds these bytes) or "different"."""
    for _ in range(3):
        existing = bucket.get_blob(name)
        if existing is not None:
            return ("same" if _holds(existing, data) else "different"), existing
        written = gcs.create(bucket, name, data, content_type=content_type)
        if written is None:
            continue  # created between our look and our write: look again
        return "created", bucket.blob(name, generation=written.generation)
    raise ConflictError(f"gs://{bucket.name}/{name} keeps appearing and disappearing")


def _check_setup(rt: Runtime) -> None:
    s = rt.settings
    if s.backup_bucket == s.registry_bucket:
        raise ConfigError(
            f"the backup bucket must not be the registry bucket ({s.registry_bucket}); "
            "set WARDEN_BACKUP_BUCKET"
        )


def _check_id(snapshot_id: str) -> None:
    if not _ID.fullmatch(snapshot_id):
        raise ConfigError(
            f"invalid snapshot id {snapshot_id!r}: use letters, digits, '.', '_' and '-' "
            "(at most 128 characters, no '/')"
        )


def default_snapshot_id(now: datetime, model: str | None = None) -> str:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{model}" if model else stamp


def _read_snapshot(backup: storage.Bucket, snapshot_id: str) -> dict[str, Any] | None:
    got = gcs.read_bytes(backup, _snap_dir(snapshot_id) + SNAPSHOT_MANIFEST)
    if got is None:
        return None
    try:
        doc = json.loads(got.data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"snapshot {snapshot_id}: snapshot.json is not valid JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise IntegrityError(f"snapshot {snapshot_id}: snapshot.json has no models")
    return doc


def _snapshot_from_doc(doc: Mapping[str, Any], backup_bucket: str, **stats: Any) -> Snapshot:
    return Snapshot(
        id=str(doc["id"]),
        created_at=str(doc["created_at"]),
        source_bucket=str(doc.get("source_bucket", "")),
        backup_bucket=backup_bucket,
        code_version=str(doc.get("code_version", "")),
        models=dict(doc["models"]),
        **stats,
    )


# -- snapshot ---------------------------------------------------------------------------------
@dataclass
class _Counts:
    copied: int = 0
    reused: int = 0


def snapshot(rt: Runtime, *, model: str | None = None, snapshot_id: str | None = None) -> Snapshot:
    """Copy the registry (every model, or ``model``) to ``gs://BACKUP/snapshots/ID/``.

    Idempotent per id: a complete snapshot is returned as is; an interrupted one is completed.
    """
    _check_setup(rt)
    started = rt.clock()
    sid = snapshot_id or default_snapshot_id(started, model)
    _check_id(sid)
    storage_client = rt.clients.storage
    backup = storage_client.bucket(rt.settings.backup_bucket)
    done = _read_snapshot(backup, sid)
    if done is not None:
        return _snapshot_from_doc(done, backup.name, already_complete=True)

    source = storage_client.bucket(rt.settings.registry_bucket)
    counts = _Counts()
    models: dict[str, dict[str, Any]] = {}
    for name in [model] if model else _registry_models(rt):
        doc = _snapshot_model(rt, source, backup, sid, name, counts)
        if model or doc["versions"] or doc["aliases"] or doc["history"] or doc["skipped"]:
            models[name] = doc
    doc = {
        "schema": SCHEMA,
        "id": sid,
        "created_at": _iso(started),
        "source_bucket": source.name,
        "code_version": rt.settings.code_version,
        "models": models,
    }
    state, _ = _put_once(
        backup, _snap_dir(sid) + SNAPSHOT_MANIFEST, _dumps(doc), "application/json"
    )
    if state == "different":  # a concurrent run with the same id committed first: theirs stands
        doc = _read_snapshot(backup, sid) or doc
    result = _snapshot_from_doc(doc, backup.name, copied=counts.copied, reused=counts.reused)
    log.info(
        "registry snapshot complete",
        extra=fields(
            snapshot=sid,
            models=sorted(models),
            copied=counts.copied,
            reused=counts.reused,
            skipped=result.skipped or None,
        ),
    )
    for name, skipped in result.skipped.items():
        log.error(
            "versions left out of the snapshot",
            extra=fields(snapshot=sid, model=name, skipped=skipped),
        )
    return result


def _registry_models(rt: Runtime) -> list[str]:
    # Top-level folders starting with "_" hold operational state (e.g. _alerting/), not models.
    return [m for m in rt.registry().models() if not m.startswith("_")]


def _snapshot_model(
    rt: Runtime,
    source: storage.Bucket,
    backup: storage.Bucket,
    sid: str,
    model: str,
    counts: _Counts,
) -> dict[str, Any]:
    aliases: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    # Aliases first, versions after: whatever an alias points at is then surely listed.
    for alias in ALIASES:
        state = _read_alias(source, model, alias)
        if state is not None:
            aliases[alias] = state
        history += _read_history(source, model, alias, state)
    versions: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for number, manifest_blob, files in _manifested_versions(rt, model):
        try:
            versions[str(number)] = _copy_version(
                backup, sid, model, number, manifest_blob, files, counts
            )
        except IntegrityError as exc:  # cannot be copied faithfully: recorded, not fatal
            skipped[str(number)] = str(exc)
    for alias, state in aliases.items():
        if str(state["version"]) not in versions:  # only if that version was skipped as corrupt
            log.error(
                "snapshot: alias points at a version that could not be copied",
                extra=fields(snapshot=sid, model=model, alias=alias, version=state["version"]),
            )
    return {"aliases": aliases, "versions": versions, "history": history, "skipped": skipped}


def _read_alias(source: storage.Bucket, model: str, alias: str) -> dict[str, Any] | None:
    got = gcs.read_bytes(source, _alias_name(model, alias))
    if got is None:
        return None
    raw = json.loads(got.data)
    state = AliasState.parse(raw, got.generation)
    if state is None:  # only housekeeping's retirement marks: no champion yet
        return None
    return {
        "version": state.version,
        "previous_version": state.previous_version,
        "seq": state.seq,
        "generation": state.generation,
        "state": raw,  # the object's content, as read
    }


def _read_history(
    source: storage.Bucket, model: str, alias: str, state: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    upto = None if state is None else int(state["seq"])
    entries: dict[int, dict[str, Any]] = {}
    for blob in source.client.list_blobs(source.name, prefix=_history_prefix(model, alias)):
        raw = json.loads(blob.download_as_bytes())
        seq = int(raw["seq"])
        if upto is None or seq <= upto:  # later moves belong to the next snapshot
            entries[seq] = raw
    if state is not None and upto not in entries:
        entries[int(state["seq"])] = state["state"]  # its history write was interrupted
    return [entries[k] for k in sorted(entries)]


def _manifested_versions(
    rt: Runtime, model: str
) -> Iterable[tuple[int, storage.Blob, dict[str, storage.Blob]]]:
    """(number, manifest blob, {file name: blob}) of every version with a manifest."""
    by_version: dict[int, dict[str, storage.Blob]] = {}
    prefix = f"{model}/versions/"
    for blob in rt.clients.storage.list_blobs(rt.settings.registry_bucket, prefix=prefix):
        parts = blob.name[len(prefix) :].split("/")
        if len(parts) == 2 and parts[0].isdigit():
            by_version.setdefault(int(parts[0]), {})[parts[1]] = blob
    for number in sorted(by_version):
        files = by_version[number]
        manifest = files.pop(MANIFEST, None)
        if manifest is not None:  # no manifest: in flight or abandoned, never visible
            yield number, manifest, files


def _copy_version(
    backup: storage.Bucket,
    sid: str,
    model: str,
    number: int,
    manifest_blob: storage.Blob,
    blobs: Mapping[str, storage.Blob],
    counts: _Counts,
) -> dict[str, Any]:
    manifest_bytes = manifest_blob.download_as_bytes()
    records = _manifest_records(manifest_bytes, f"{model} v{number}", exc_type=IntegrityError)
    payload: dict[str, tuple[bytes, str | None]] = {}
    for name, expected in records.items():  # verify everything before writing anything
        blob = blobs.get(name)
        if blob is None:
            raise IntegrityError(f"{name} is listed in the manifest but missing from the registry")
        data = blob.download_as_bytes()
        if sha256_hex(data) != expected:
            raise IntegrityError(
                f"{name} does not match the manifest's sha256 (corrupted in the registry)"
            )
        payload[name] = (data, blob.content_type)
    payload[MANIFEST] = (manifest_bytes, manifest_blob.content_type or "application/json")
    target = _snap_dir(sid) + _version_dir(model, number)
    for name, (data, content_type) in payload.items():  # the manifest goes last
        state, blob = _put_once(backup, target + name, data, content_type)
        if state == "different":
            # Left by an interrupted attempt and not what we verified; the folder is not
            # committed yet (no snapshot.json), so replacing it hides nothing from anyone.
            replaced = gcs.write_if(
                backup,
                target + name,
                data,
                generation=int(blob.generation or 0),
                content_type=content_type,
            )
            if replaced is None:
                raise ConflictError(f"gs://{backup.name}/{target}{name} changed meanwhile")
            state = "created"
        counts.copied += state == "created"
        counts.reused += state == "same"
    return {"manifest_sha256": sha256_hex(manifest_bytes), "files": records}


def _manifest_records(data: bytes, what: str, *, exc_type: type[Exception]) -> dict[str, str]:
    """{file name: sha256} from a version manifest's bytes."""
    try:
        manifest = json.loads(data)
        records = {str(n): str(r["sha256"]) for n, r in manifest["files"].items()}
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise exc_type(f"{what}: unreadable manifest ({exc})") from exc
    for name in records:
        if "/" in name or name in (MANIFEST, CLAIM):
            raise exc_type(f"{what}: manifest lists a reserved or nested name {name!r}")
    return records


# -- listing ----------------------------------------------------------------------------------
def _snapshot_ids(rt: Runtime) -> list[str]:
    it = rt.clients.storage.list_blobs(rt.settings.backup_bucket, prefix=PREFIX, delimiter="/")
    for _ in it:
        pass
    return sorted(p[len(PREFIX) :].rstrip("/") for p in it.prefixes)


def _complete(rt: Runtime) -> tuple[list[dict[str, Any]], list[str]]:
    """(snapshot.json documents, ids of folders without a readable one)."""
    backup = rt.clients.storage.bucket(rt.settings.backup_bucket)
    docs, incomplete = [], []
    for sid in _snapshot_ids(rt):
        try:
            doc = _read_snapshot(backup, sid)
        except IntegrityError as exc:
            log.warning("ignoring snapshot %s: %s", sid, exc)
            doc = None
        if doc is None:
            incomplete.append(sid)
        else:
            docs.append(doc)
    docs.sort(key=lambda d: (_parse_ts(d["created_at"]), d["id"]), reverse=True)
    return docs, incomplete


def list_snapshots(rt: Runtime) -> list[SnapshotInfo]:
    """Complete snapshots, newest first. Interrupted ones (no snapshot.json) are not listed."""
    docs, _ = _complete(rt)
    return [
        SnapshotInfo(
            id=d["id"],
            created_at=d["created_at"],
            models=sorted(d["models"]),
            versions={m: len(md["versions"]) for m, md in sorted(d["models"].items())},
            champions={
                m: md["aliases"].get("champion", {}).get("version")
                for m, md in sorted(d["models"].items())
            },
            code_version=str(d.get("code_version", "")),
            skipped=sum(len(md.get("skipped", {})) for md in d["models"].values()),
        )
        for d in docs
    ]


# -- restore ----------------------------------------------------------------------------------
def restore(
    rt: Runtime,
    snapshot_id: str,
    *,
    model: str | None = None,
    dry_run: bool = False,
    actor: str = "warden-restore",
) -> RestoreReport:
    """Restore snapshot ``snapshot_id`` into the registry bucket without clobbering anything.

    Per version: absent in the target → claim the number, write the files, then the manifest
    (all create-only, so a concurrent writer wins and is reported as a conflict); same manifest
    → "present"; same number with another manifest → "conflict", untouched. Per alias: created
    only where the target has none. ``dry_run`` reads and verifies everything, writes nothing.
    """
    _check_setup(rt)
    _check_id(snapshot_id)
    storage_client = rt.clients.storage
    backup = storage_client.bucket(rt.settings.backup_bucket)
    doc = _read_snapshot(backup, snapshot_id)
    if doc is None:
        raise SnapshotNotFound(
            f"no complete snapshot {snapshot_id!r} in gs://{backup.name}/{PREFIX} "
            "(see `warden snapshots`; a folder without snapshot.json is incomplete)"
        )
    if model is not None and model not in doc["models"]:
        raise SnapshotNotFound(
            f"snapshot {snapshot_id} does not hold model {model!r} "
            f"(it holds {sorted(doc['models'])})"
        )
    target = storage_client.bucket(rt.settings.registry_bucket)
    report = RestoreReport(
        snapshot_id=snapshot_id,
        source=f"gs://{backup.name}/{_snap_dir(snapshot_id)}",
        target_bucket=target.name,
        dry_run=dry_run,
    )
    ctx = _RestoreContext(rt, backup, target, snapshot_id, dry_run, actor)
    for name in [model] if model else sorted(doc["models"]):
        _restore_model(ctx, name, doc["models"][name], report)
    log.info(
        "registry restore %s",
        "planned (dry run)" if dry_run else "done",
        extra=fields(
            snapshot=snapshot_id,
            target=target.name,
            outcomes={s: len(report.by_status(s)) for s in {v.status for v in report.versions}},
            problems=[asdict(p) for p in report.problems] or None,
        ),
    )
    return report


@dataclass
class _RestoreContext:
    rt: Runtime
    backup: storage.Bucket
    target: storage.Bucket
    sid: str
    dry_run: bool
    actor: str

    @property
    def claim_run_id(self) -> str:
        return f"restore:{self.sid}"


def _restore_model(
    ctx: _RestoreContext, model: str, doc: Mapping[str, Any], report: RestoreReport
) -> None:
    outcomes: dict[int, str] = {}
    for key in sorted(doc["versions"], key=int):
        outcome = _restore_version(ctx, model, int(key), doc["versions"][key])
        outcomes[outcome.version] = outcome.status
        report.versions.append(outcome)
    for key, reason in sorted(doc.get("skipped", {}).items(), key=lambda kv: int(kv[0])):
        outcomes[int(key)] = "unavailable"
        report.versions.append(
            VersionRestore(model, int(key), "unavailable", f"not in the snapshot: {reason}")
        )
    for alias in ALIASES:
        state = doc["aliases"].get(alias)
        entries = [h for h in doc.get("history", []) if h.get("alias", alias) == alias]
        report.aliases.append(_restore_alias(ctx, model, alias, state, entries, outcomes))


def _restore_version(
    ctx: _RestoreContext, model: str, number: int, record: Mapping[str, Any]
) -> VersionRestore:
    vdir = _version_dir(model, number)

    def out(status: str, detail: str = "") -> VersionRestore:
        return VersionRestore(model, number, status, detail)

    existing = gcs.read_bytes(ctx.target, vdir + MANIFEST)
    if existing is not None:
        return _compare_present(ctx, model, number, record, existing.data)
    try:
        files = _read_verified(ctx, model, number, record)
    except IntegrityError as exc:
        return out("corrupt", str(exc))
    claim = gcs.read_bytes(ctx.target, vdir + CLAIM)
    if claim is not None and not _is_our_claim(ctx, claim.data):
        return out("conflict", _claim_detail(claim.data))
    if ctx.dry_run:
        return out("would_restore")
    if claim is None:
        body = _dumps(
            {
                "run_id": ctx.claim_run_id,
                "claimed_at": _iso(ctx.rt.clock()),
                "restored_from": f"gs://{ctx.backup.name}/{_snap_dir(ctx.sid)}",
            }
        )
        state, blob = _put_once(ctx.target, vdir + CLAIM, body, "application/json")
        if state == "different" and not _is_our_claim(ctx, blob.download_as_bytes()):
            return out("conflict", "the version number was claimed in the target meanwhile")
    manifest_bytes, _ = files.pop(MANIFEST)
    for name, (data, content_type) in files.items():
        state, _ = _put_once(ctx.target, vdir + name, data, content_type)
        if state == "different":
            return out("conflict", f"{name} already exists in the target with other content")
    state, _ = _put_once(ctx.target, vdir + MANIFEST, manifest_bytes, "application/json")
    if state == "different":  # a writer committed this number while we copied
        return out("conflict", "another manifest was written for this version meanwhile")
    return out("restored" if state == "created" else "present")


def _compare_present(
    ctx: _RestoreContext, model: str, number: int, record: Mapping[str, Any], current: bytes
) -> VersionRestore:
    if sha256_hex(current) == record["manifest_sha256"]:
        return VersionRestore(model, number, "present", "identical manifest in the target")
    # Same content, other formatting, still counts as the same version.
    got = gcs.read_bytes(ctx.backup, _snap_dir(ctx.sid) + _version_dir(model, number) + MANIFEST)
    try:
        same = got is not None and json.loads(got.data) == json.loads(current)
    except ValueError:
        same = False
    if same:
        return VersionRestore(model, number, "present", "equivalent manifest in the target")
    return VersionRestore(
        model,
        number,
        "conflict",
        "the target has another version with this number (different manifest); left untouched",
    )


def _read_verified(
    ctx: _RestoreContext, model: str, number: int, record: Mapping[str, Any]
) -> dict[str, tuple[bytes, str | None]]:
    """Every file of a snapshot version, checked against the manifest and snapshot.json."""
    what = f"{model} v{number} in snapshot {ctx.sid}"
    src = _snap_dir(ctx.sid) + _version_dir(model, number)
    manifest = ctx.backup.get_blob(src + MANIFEST)
    if manifest is None:
        raise IntegrityError(f"{what}: manifest.json is missing from the backup")
    manifest_bytes = manifest.download_as_bytes()
    if sha256_hex(manifest_bytes) != record["manifest_sha256"]:
        raise IntegrityError(f"{what}: manifest.json does not match snapshot.json's sha256")
    records = _manifest_records(manifest_bytes, what, exc_type=IntegrityError)
    if records != dict(record["files"]):
        raise IntegrityError(f"{what}: manifest and snapshot.json list different files")
    files: dict[str, tuple[bytes, str | None]] = {}
    for name, expected in records.items():
        blob = ctx.backup.get_blob(src + name)
        if blob is None:
            raise IntegrityError(f"{what}: {name} is missing from the backup")
        data = blob.download_as_bytes()
        if sha256_hex(data) != expected:
            raise IntegrityError(
                f"{what}: {name} sha256 does not match the manifest; the backup copy is corrupt"
            )
        files[name] = (data, blob.content_type)
    files[MANIFEST] = (manifest_bytes, "application/json")
    return files


def _is_our_claim(ctx: _RestoreContext, data: bytes) -> bool:
    try:
        return json.loads(data).get("run_id") == ctx.claim_run_id
    except (ValueError, AttributeError):
        return False


def _claim_detail(data: bytes) -> str:
    try:
        run_id = json.loads(data).get("run_id")
    except (ValueError, AttributeError):
        run_id = "?"
    return (
        f"the version number is claimed in the target by run {run_id} but has no manifest "
        "(in flight, or abandoned); left untouched"
    )


def _restore_alias(
    ctx: _RestoreContext,
    model: str,
    alias: str,
    state: Mapping[str, Any] | None,
    history: list[Mapping[str, Any]],
    outcomes: Mapping[int, str],
) -> AliasRestore:
    current = _read_target_alias(ctx, model, alias)
    if current is not None:
        return _kept(ctx, model, alias, current, history)
    if state is None:
        return AliasRestore(model, alias, "skipped", None, "the snapshot has no such alias")
    version = int(state["version"])
    if outcomes.get(version) not in {"restored", "present", "would_restore"}:
        return AliasRestore(
            model,
            alias,
            "skipped",
            version,
            f"v{version} was not restored ({outcomes.get(version, 'missing')}); alias left unset",
        )
    existing_seqs = _history_seqs(ctx.target, model, alias)
    # The snapshot's history goes only into an empty history: never mix two lineages.
    to_restore = [] if existing_seqs else [h for h in history if int(h["seq"]) <= int(state["seq"])]
    next_seq = max([*existing_seqs, *(int(h["seq"]) for h in to_restore), 0]) + 1
    if ctx.dry_run:
        return AliasRestore(
            model, alias, "would_create", version, f"{alias} → v{version}", len(to_restore)
        )
    previous = state.get("previous_version")
    new = AliasState(
        alias=alias,
        version=version,
        # Rollback after a restore goes where it would have gone in the snapshotted registry,
        # if that version came back too.
        previous_version=(
            previous
            if isinstance(previous, int) and outcomes.get(previous) in {"restored", "present"}
            else None
        ),
        seq=next_seq,
        changed_at=_iso(ctx.rt.clock()),
        action="restore",
        reason=f"restore {ctx.sid}",
        actor=ctx.actor,
    )
    state_now, blob = _put_once(
        ctx.target, _alias_name(model, alias), _dumps(new.to_json()), "application/json"
    )
    if state_now != "created":  # someone set it meanwhile: theirs stands
        theirs = AliasState.parse(json.loads(blob.download_as_bytes()))
        if theirs is None:  # housekeeping's retirement marks, no target: try again later
            return AliasRestore(
                model,
                alias,
                "skipped",
                version,
                f"{alias} is held by housekeeping's retirement marks; run the restore again",
            )
        return _kept(ctx, model, alias, theirs, history)
    # History only once the alias is ours, so a writer that won the alias race never finds its
    # own history entries shadowed by the snapshot's. Then, as Registry.move_alias does, the
    # entry of this move (create-only).
    restored = _write_history(ctx, model, alias, to_restore)
    _write_history(ctx, model, alias, [new.to_json()])
    return AliasRestore(model, alias, "created", version, f"{alias} → v{version}", restored)


def _read_target_alias(ctx: _RestoreContext, model: str, alias: str) -> AliasState | None:
    got = gcs.read_bytes(ctx.target, _alias_name(model, alias))
    return None if got is None else AliasState.parse(json.loads(got.data))


def _kept(
    ctx: _RestoreContext,
    model: str,
    alias: str,
    current: AliasState,
    history: list[Mapping[str, Any]],
) -> AliasRestore:
    detail = f"kept existing {alias} v{current.version}"
    restored = 0
    if current.action == "restore" and current.reason == f"restore {ctx.sid}":
        # Set by an earlier run of this same restore that may have stopped before writing the
        # history: complete it (create-only, so entries already there stay as they are).
        detail += " (set by an earlier run of this restore)"
        if not ctx.dry_run:
            earlier = [h for h in history if int(h["seq"]) < current.seq]
            restored = _write_history(ctx, model, alias, earlier)
            _write_history(ctx, model, alias, [current.to_json()])
    return AliasRestore(model, alias, "kept", current.version, detail, restored)


def _write_history(
    ctx: _RestoreContext, model: str, alias: str, entries: Iterable[Mapping[str, Any]]
) -> int:
    """Create the history objects that do not exist yet; return how many were written."""
    written = 0
    for entry in entries:
        name = _history_name(model, alias, int(entry["seq"]))
        state, _ = _put_once(ctx.target, name, _dumps(dict(entry)), "application/json")
        written += state == "created"
    return written


def _history_name(model: str, alias: str, seq: int) -> str:
    return f"{_history_prefix(model, alias)}{seq:08d}.json"


def _history_seqs(bucket: storage.Bucket, model: str, alias: str) -> list[int]:
    prefix = _history_prefix(model, alias)
    names = (b.name[len(prefix) :] for b in bucket.client.list_blobs(bucket.name, prefix=prefix))
    return [int(n.removesuffix(".json")) for n in names if n.removesuffix(".json").isdigit()]


# -- pruning ----------------------------------------------------------------------------------
def prune_snapshots(
    rt: Runtime,
    *,
    retention_days: int,
    now: datetime | None = None,
    dry_run: bool = False,
    model: str | None = None,
) -> list[str]:
    """Delete snapshots older than ``retention_days``; return their ids (sorted).

    ``model``: only that model's own snapshots (those holding exactly it, e.g. housekeeping's
    ``DATE-MODEL``), so one model's retention never prunes another's or a whole-registry backup.

    Complete snapshots: by their ``created_at``; the newest complete snapshot of each model is
    always kept, however old, so a model that stopped being backed up keeps its last backup.
    Incomplete folders: by their newest object. snapshot.json goes first, so a half-deleted
    snapshot is merely incomplete (invisible), never a listed snapshot with missing files.
    Note: a bucket lifecycle rule deleting objects by age overrides all of this (it keeps no
    "newest" snapshot and deletes in no particular order); it should only be a safety net set
    well beyond ``retention_days``.
    """
    now = now or rt.clock()
    cutoff = now - timedelta(days=retention_days)
    docs, incomplete = _complete(rt)
    newest: dict[str, str] = {}
    for d in docs:  # newest first
        for m in d["models"]:
            newest.setdefault(m, d["id"])
    protected = set(newest.values())
    doomed = [
        d["id"]
        for d in docs
        if _parse_ts(d["created_at"]) < cutoff
        and d["id"] not in protected
        and (model is None or list(d["models"]) == [model])
    ]
    backup = rt.clients.storage.bucket(rt.settings.backup_bucket)
    for sid in incomplete:
        if model is not None and not re.fullmatch(
            rf"\d{{8}}-{re.escape(model)}(-[0-9a-f]{{8}})?", sid
        ):
            continue
        blobs = list(backup.client.list_blobs(backup.name, prefix=_snap_dir(sid)))
        if blobs and max(b.time_created for b in blobs) < cutoff:
            doomed.append(sid)
    doomed.sort()
    if not dry_run:
        for sid in doomed:
            _delete_snapshot(backup, sid)
    log.info(
        "snapshots pruned" if not dry_run else "snapshots to prune (dry run)",
        extra=fields(
            deleted=doomed, kept_as_newest=sorted(protected), retention_days=retention_days
        ),
    )
    return doomed


def _delete_snapshot(backup: storage.Bucket, sid: str) -> None:
    from google.api_core.exceptions import NotFound

    name = _snap_dir(sid) + SNAPSHOT_MANIFEST
    head = backup.get_blob(name)
    # First: from here on the snapshot is invisible. Gone already: a concurrent prune.
    if (
        head is not None
        and not gcs.delete_if(backup, name, int(head.generation or 0))
        and backup.get_blob(name) is not None
    ):
        raise ConflictError(f"gs://{backup.name}/{name} was replaced while being pruned")
    for blob in backup.client.list_blobs(backup.name, prefix=_snap_dir(sid)):
        with contextlib.suppress(NotFound):  # a concurrent prune got there first
            blob.delete()
