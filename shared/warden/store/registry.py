"""The versioned model registry in Cloud Storage.

Layout (``MODEL`` is the model's name)::

    MODEL/versions/000042/claim.json       create-only: who claimed number 42 (never reused)
    MODEL/versions/000042/model.joblib     immutable artifact (create-only)
    MODEL/versions/000042/profile.json     reference statistics (create-only)
    MODEL/versions/000042/report.html      evaluation report (create-only)
    MODEL/versions/000042/manifest.json    written LAST: sha256 of each file; makes 42 visible
    MODEL/aliases/champion.json            pointer, moved only by compare-and-swap
    MODEL/aliases/history/champion/00000007.json   one create-only object per alias move

Guarantees, and how:

* Two writers never share a version number: the number is claimed with a create-only upload
  (:func:`warden.store.gcs.create`) of ``claim.json``; a 412 means "taken, try the next one".
* A version without a manifest is invisible: readers list manifests, never folders.
* The alias never tears or goes back in time: it moves by compare-and-swap on the generation read
  (:func:`warden.store.gcs.update_json`) and a lost race re-reads and re-decides.
* History is append-only and complete: after the alias CAS succeeds its new state is written
  create-only under its sequence number; if a crash skipped that write, the next mover (or a
  history read) restores it from the alias object itself, which holds the whole entry.
* A 412 on any of these writes that is our own write, retried by the client library after a
  transient error, is recognised as ours (owner read-back, :mod:`warden.store.gcs`).
* ``joblib.load`` never sees bytes whose sha256 differs from the manifest.
* Housekeeping retires a version in the commit's reverse order: the manifest first (the version
  vanishes at once for every reader), then its files; ``claim.json`` stays, so no number is
  ever handed out twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from warden.errors import ConflictError, IntegrityError, VersionNotFound
from warden.store import gcs

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CLAIM = "claim.json"
ARTIFACT = "model.joblib"
SCHEMA = 1
ALIASES = ("champion",)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class AliasState:
    """The alias object's content: the current target and the move that put it there."""

    alias: str
    version: int
    previous_version: int | None
    seq: int
    changed_at: str
    action: str
    reason: str
    actor: str
    generation: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any], generation: int = 0) -> AliasState:
        return cls(
            alias=str(data["alias"]),
            version=int(data["version"]),
            previous_version=(
                None if data.get("previous_version") is None else int(data["previous_version"])
            ),
            seq=int(data["seq"]),
            changed_at=str(data["changed_at"]),
            action=str(data.get("action", "")),
            reason=str(data.get("reason", "")),
            actor=str(data.get("actor", "")),
            generation=generation,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "alias": self.alias,
            "version": self.version,
            "previous_version": self.previous_version,
            "seq": self.seq,
            "changed_at": self.changed_at,
            "action": self.action,
            "reason": self.reason,
            "actor": self.actor,
        }


@dataclass(frozen=True)
class Verification:
    model: str
    version: int
    ok: bool
    detail: str
    sha256: str | None = None


@dataclass(frozen=True)
class StoredObject:
    """One object of a version folder, as listed."""

    path: str
    generation: int
    size: int
    created: datetime | None


@dataclass(frozen=True)
class RetiredManifest:
    """A deleted manifest's bytes, kept in memory so the retirement can be undone."""

    model: str
    version: int
    data: bytes


class _HashSink:
    """A write-only file object that hashes what it is given."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise io.UnsupportedOperation("can only rewind to the start")
        self._hash = hashlib.sha256()  # the download restarts from byte 0
        return 0

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _version_dir(model: str, version: int) -> str:
    return f"{model}/versions/{version:06d}/"


def parse_ref(ref: str | int | None) -> int | str:
    """``None``/``"champion"`` → alias; ``"latest"``; ``"42"``/``"v42"``/``42`` → 42."""
    if ref is None:
        return "champion"
    if isinstance(ref, int):
        return ref
    text = ref.strip().lower().removeprefix("v")
    if text.isdigit():
        return int(text)
    if text in ALIASES or text == "latest":
        return text
    raise VersionNotFound(
        f"not a version or alias: {ref!r} (use a number, 'latest' or one of {ALIASES})"
    )


class Registry:
    """Versions, aliases and history of the models in one bucket.

    ``client`` is a ``google.cloud.storage.Client``; nothing is fetched until a method runs.
    """

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = 25,
    ) -> None:
        self._client = client
        self.bucket_name = bucket
        self._clock = clock
        self._max_attempts = max_attempts
        self._bucket: storage.Bucket | None = None

    @property
    def bucket(self) -> storage.Bucket:
        if self._bucket is None:
            self._bucket = self._client.bucket(self.bucket_name)
        bucket: storage.Bucket = self._bucket
        return bucket

    # -- low-level helpers ----------------------------------------------------------------
    def _read_json(self, name: str) -> gcs.Stored[dict[str, Any]] | None:
        return gcs.read_json(self.bucket, name)

    def _create(self, name: str, data: bytes, content_type: str) -> gcs.Written | None:
        """Create-only upload: the write, or None if the object already exists (not ours)."""
        return gcs.create(self.bucket, name, data, content_type=content_type)

    @staticmethod
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()

    # -- reading ---------------------------------------------------------------------------
    def ping(self) -> None:
        """Raise if the registry bucket cannot be listed (missing, no permission, unreachable)."""
        for _ in self._client.list_blobs(self.bucket_name, max_results=1):
            break

    def models(self) -> list[str]:
        it = self._client.list_blobs(self.bucket_name, delimiter="/")
        for _ in it:
            pass
        return sorted(p.rstrip("/") for p in it.prefixes)

    def versions(self, model: str) -> list[dict[str, Any]]:
        """Manifests of every visible version, oldest first."""
        from google.api_core.exceptions import NotFound

        out = []
        for blob in self._client.list_blobs(self.bucket_name, prefix=f"{model}/versions/"):
            if blob.name.endswith("/" + MANIFEST):
                try:
                    out.append(json.loads(blob.download_as_bytes()))
                except NotFound:  # retired by housekeeping between the listing and the read
                    continue
        return sorted(out, key=lambda m: int(m["version"]))

    def version_numbers(self, model: str) -> list[int]:
        nums = []
        for blob in self._client.list_blobs(self.bucket_name, prefix=f"{model}/versions/"):
            if blob.name.endswith("/" + MANIFEST):
                nums.append(int(blob.name.split("/")[-2]))
        return sorted(nums)

    def alias(self, model: str, alias: str = "champion") -> AliasState | None:
        got = self._read_json(f"{model}/aliases/{alias}.json")
        return None if got is None else AliasState.from_json(got.data, got.generation)

    def resolve(self, model: str, ref: str | int | None = None) -> int:
        target = parse_ref(ref)
        if isinstance(target, int):
            return target
        if target == "latest":
            nums = self.version_numbers(model)
            if not nums:
                raise VersionNotFound(f"{model}: no versions registered yet")
            return nums[-1]
        state = self.alias(model, target)
        if state is None:
            raise VersionNotFound(f"{model}: alias {target!r} is not set (no champion yet)")
        return state.version

    def manifest(self, model: str, ref: str | int | None = None) -> dict[str, Any]:
        version = self.resolve(model, ref)
        got = self._read_json(_version_dir(model, version) + MANIFEST)
        if got is None:
            raise VersionNotFound(
                f"{model}: version {version} does not exist (or was never completed)"
            )
        return got.data

    def read_file(self, model: str, version: int, name: str, manifest: Mapping[str, Any]) -> bytes:
        """Download one file of a version and check it against the manifest's sha256."""
        from google.api_core.exceptions import NotFound

        record = manifest.get("files", {}).get(name)
        if record is None:
            raise IntegrityError(f"{model} v{version}: {name} is not listed in its manifest")
        path = _version_dir(model, version) + name
        try:
            data: bytes = self.bucket.blob(path).download_as_bytes()
        except NotFound:
            raise IntegrityError(
                f"{model} v{version}: gs://{self.bucket_name}/{path} is missing"
            ) from None
        digest = sha256_hex(data)
        if digest != record["sha256"]:
            raise IntegrityError(
                f"{model} v{version}: {name} sha256 {digest[:16]}… does not match the manifest's "
                f"{record['sha256'][:16]}…; refusing to use it"
            )
        return data

    def verify(self, model: str, ref: str | int | None = None) -> Verification:
        version = self.resolve(model, ref)
        manifest = self.manifest(model, version)
        try:
            data = self.read_file(model, version, ARTIFACT, manifest)
        except IntegrityError as exc:
            return Verification(model, version, False, str(exc))
        return Verification(model, version, True, "sha256 matches manifest", sha256_hex(data))

    def load(self, model: str, ref: str | int | None = None) -> tuple[Any, dict[str, Any]]:
        """Return (estimator, manifest). The bytes are verified before ``joblib.load``."""
        version = self.resolve(model, ref)
        manifest = self.manifest(model, version)
        data = self.read_file(model, version, ARTIFACT, manifest)
        import joblib  # only after verification; imports nothing of scikit-learn by itself

        return joblib.load(io.BytesIO(data)), manifest

    # -- housekeeping: listing, streaming checks, retiring ------------------------------------
    def version_folders(self, model: str) -> dict[int, dict[str, StoredObject]]:
        """Every version folder of ``model``, manifested or not, with its objects (one listing).

        A folder without ``manifest.json`` is either being written, was interrupted (an orphan),
        or was retired (only ``claim.json`` is left, so its number is never reused).
        """
        out: dict[int, dict[str, StoredObject]] = {}
        prefix = f"{model}/versions/"
        for blob in self._client.list_blobs(self.bucket_name, prefix=prefix):
            folder, _, name = blob.name.removeprefix(prefix).partition("/")
            if not folder.isdigit() or not name or "/" in name:
                continue
            out.setdefault(int(folder), {})[name] = StoredObject(
                path=blob.name,
                generation=int(blob.generation or 0),
                size=int(blob.size or 0),
                created=blob.time_created,
            )
        return dict(sorted(out.items()))

    def file_sha256(self, path: str, *, generation: int | None = None) -> str | None:
        """sha256 of one object, streamed (never held in memory, never unpickled); None if
        it does not exist (or no longer has ``generation``)."""
        from google.api_core.exceptions import NotFound

        sink = _HashSink()
        blob = self.bucket.blob(path, generation=generation or None)
        try:
            blob.download_to_file(sink)
        except NotFound:
            return None
        return sink.hexdigest()

    def delete_object(self, path: str, generation: int) -> bool:
        """Delete one object only if it still has ``generation``. False if it is gone or was
        replaced meanwhile (then it is left alone)."""
        return gcs.delete_if(self.bucket, path, generation)

    def retire_manifest(self, model: str, version: int) -> RetiredManifest | None:
        """Delete a version's manifest — the commit point in reverse: the version vanishes at
        once for every reader, while its files stay until :meth:`delete_files`. Returns what
        :meth:`restore_manifest` needs, or None if there was no manifest (or it changed)."""
        path = _version_dir(model, version) + MANIFEST
        got = gcs.read_bytes(self.bucket, path)
        if got is None or not self.delete_object(path, got.generation):
            return None
        return RetiredManifest(model, version, got.data)

    def restore_manifest(self, retired: RetiredManifest) -> bool:
        """Put a retired manifest back (create-only, same bytes) while its files still exist."""
        path = _version_dir(retired.model, retired.version) + MANIFEST
        return self._create(path, retired.data, "application/json") is not None

    def delete_files(
        self, model: str, version: int, objects: Mapping[str, StoredObject]
    ) -> list[str]:
        """Delete a manifest-less version's files, each only at the generation listed. The
        claim stays: it keeps the number taken forever (``claim_version`` counts folders)."""
        deleted = []
        for name, obj in sorted(objects.items()):
            if name in (MANIFEST, CLAIM):
                continue
            if self.delete_object(obj.path, obj.generation):
                deleted.append(obj.path)
        return deleted

    # -- writing a version -------------------------------------------------------------------
    def claim_version(self, model: str, run_id: str) -> int:
        """Atomically claim the next free version number for ``model``."""
        it = self._client.list_blobs(self.bucket_name, prefix=f"{model}/versions/", delimiter="/")
        for _ in it:
            pass
        taken = [
            int(p.rstrip("/").split("/")[-1])
            for p in it.prefixes
            if p.rstrip("/").split("/")[-1].isdigit()
        ]
        candidate = max(taken, default=0) + 1
        body = self._dumps({"run_id": run_id, "claimed_at": _iso(self._clock())})
        for _ in range(1000):
            if self._create(_version_dir(model, candidate) + CLAIM, body, "application/json"):
                return candidate  # a retried claim of ours counts too (owner read-back)
            candidate += 1  # someone else holds it: the next one
        raise ConflictError(f"{model}: could not claim a version number")  # pragma: no cover

    def register(
        self, model: str, version: int, files: Mapping[str, bytes], manifest: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write the files (create-only), then the manifest with their sha256: the commit point."""
        claim = self._read_json(_version_dir(model, version) + CLAIM)
        if claim is None:
            raise VersionNotFound(f"{model}: version {version} was never claimed")
        records: dict[str, dict[str, Any]] = {}
        for name, data in files.items():
            if name in (MANIFEST, CLAIM) or "/" in name:
                raise ValueError(f"reserved or nested file name: {name}")
            content_type = {"json": "application/json", "html": "text/html"}.get(
                name.rsplit(".", 1)[-1], "application/octet-stream"
            )
            written = self._create(_version_dir(model, version) + name, data, content_type)
            if written is None:
                raise ConflictError(
                    f"{model} v{version}: {name} already exists; versions are immutable"
                )
            records[name] = {
                "sha256": sha256_hex(data),
                "size": len(data),
                "generation": written.generation,
            }
        full = {**manifest, "schema": SCHEMA, "model": model, "version": version, "files": records}
        if (
            self._create(
                _version_dir(model, version) + MANIFEST, self._dumps(full), "application/json"
            )
            is None
        ):
            raise ConflictError(f"{model} v{version}: manifest already exists")
        return full

    # -- aliases -------------------------------------------------------------------------------
    def _history_name(self, model: str, alias: str, seq: int) -> str:
        return f"{model}/aliases/history/{alias}/{seq:08d}.json"

    def _ensure_history(self, model: str, state: AliasState | None) -> None:
        if state is not None:
            self._create(
                self._history_name(model, state.alias, state.seq),
                self._dumps(state.to_json()),
                "application/json",
            )

    def move_alias(
        self,
        model: str,
        decide: Callable[[AliasState | None], int | None],
        *,
        alias: str = "champion",
        action: str,
        reason: str,
        actor: str,
    ) -> AliasState | None:
        """Move ``alias`` by compare-and-swap.

        ``decide(current)`` returns the version to point at, or None to leave the alias alone;
        it is called again with fresh state after every lost race, so its checks always hold
        against the state that is actually replaced.
        """
        kept: list[AliasState | None] = [None]  # what stays when no move is needed

        def change(stored: gcs.Stored[Any] | None) -> dict[str, Any] | None:
            current = None
            if stored is not None:
                current = AliasState.from_json(stored.data, stored.generation)
            self._ensure_history(model, current)  # repair a history write a crash skipped
            kept[0] = None
            target = decide(current)
            if target is None:
                return None
            if current is not None and current.version == target:
                kept[0] = current  # already there: idempotent
                return None
            return AliasState(
                alias=alias,
                version=target,
                previous_version=current.version if current else None,
                seq=(current.seq + 1) if current else 1,
                changed_at=_iso(self._clock()),
                action=action,
                reason=reason,
                actor=actor,
            ).to_json()

        got = gcs.update_json(
            self.bucket,
            f"{model}/aliases/{alias}.json",
            change,
            attempts=self._max_attempts,
            encode=self._dumps,
            conflict=(
                f"{model}: alias {alias!r} kept changing under us ({self._max_attempts} attempts)"
            ),
        )
        if got.written is None:
            return kept[0]
        new = AliasState.from_json(got.data, got.generation)
        self._ensure_history(model, new)
        log.info(
            "alias moved",
            extra={
                "json_fields": {
                    "model": model,
                    "alias": alias,
                    "version": new.version,
                    "previous_version": new.previous_version,
                    "action": action,
                }
            },
        )
        return new

    def promote(
        self,
        model: str,
        version: int,
        *,
        reason: str,
        actor: str,
        only_if_current: int | EllipsisType | None = ...,
    ) -> AliasState | None:
        """Point ``champion`` at ``version`` after checking its artifact.

        ``only_if_current``: promote only while the champion is still this version (None: no
        champion yet). That is how a retrain that compared against v3 refuses to replace a v5
        promoted meanwhile. Returns the new state, or None if that condition failed.
        """
        check = self.verify(model, version)
        if not check.ok:
            raise IntegrityError(check.detail)

        def decide(current: AliasState | None) -> int | None:
            if only_if_current is not ...:
                now = current.version if current else None
                if now != only_if_current and now != version:
                    return None
            return version

        return self.move_alias(model, decide, action="promote", reason=reason, actor=actor)

    def rollback(
        self, model: str, *, to: int | None = None, reason: str = "rollback", actor: str
    ) -> AliasState:
        """Point ``champion`` back at the previous champion, or at version ``to``."""
        if to is not None:
            check = self.verify(model, to)
            if not check.ok:
                raise IntegrityError(check.detail)

        def decide(current: AliasState | None) -> int | None:
            if current is None:
                raise VersionNotFound(f"{model}: there is no champion to roll back")
            target = to if to is not None else current.previous_version
            if target is None:
                raise VersionNotFound(
                    f"{model}: champion v{current.version} has no previous "
                    "champion; pass a version to roll back to"
                )
            return target

        if to is None:
            current = self.alias(model)
            if current is not None and current.previous_version is not None:
                check = self.verify(model, current.previous_version)
                if not check.ok:
                    raise IntegrityError(check.detail)
        state = self.move_alias(model, decide, action="rollback", reason=reason, actor=actor)
        assert state is not None
        return state

    def history(self, model: str, alias: str = "champion") -> list[AliasState]:
        """Every move of ``alias``, oldest first."""
        entries: dict[int, AliasState] = {}
        prefix = f"{model}/aliases/history/{alias}/"
        for blob in self._client.list_blobs(self.bucket_name, prefix=prefix):
            state = AliasState.from_json(json.loads(blob.download_as_bytes()))
            entries[state.seq] = state
        current = self.alias(model, alias)
        if current is not None and current.seq not in entries:
            entries[current.seq] = current  # its history write was interrupted
        return [entries[k] for k in sorted(entries)]
