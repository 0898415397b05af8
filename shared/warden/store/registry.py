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
* A retirement never races a move onto the version it retires: before deleting anything,
  housekeeping marks the doomed versions in the alias object itself (``retiring``, by
  compare-and-swap, never the current target) and every move re-decides against that object.
  Whichever write lands first wins: a move that landed first keeps its version out of the
  retirement; a mark that landed first makes the move refuse (its compare-and-swap fails, it
  re-reads, and finds its target marked). A mark expires (``RETIRING_LEASE``) so a housekeeping
  run that died leaves nothing blocked; moves keep other versions' marks as they are.
* Every move lands only on a version verified (sha256 against its manifest) after the alias
  state it replaces was read: inside each compare-and-swap attempt, so the version a rollback
  re-decides after a lost race is the version it verified.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
#: How long a retirement mark holds moves off its versions (housekeeping takes seconds).
RETIRING_LEASE = timedelta(hours=1)


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

    @classmethod
    def parse(cls, data: Mapping[str, Any], generation: int = 0) -> AliasState | None:
        """The alias object's state, or None when it holds no target: housekeeping's
        retirement marks on a model that has no champion yet keep the object with
        ``"version": null``."""
        if data.get("version") is None:
            return None
        return cls.from_json(data, generation)

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


def _retiring(data: Mapping[str, Any], now: datetime) -> dict[int, dict[str, Any]]:
    """The alias object's unexpired retirement marks, by version (malformed ones ignored)."""
    out: dict[int, dict[str, Any]] = {}
    marks = data.get("retiring")
    if not isinstance(marks, dict):
        return out
    for key, mark in marks.items():
        try:
            until = datetime.fromisoformat(str(mark["until"]).replace("Z", "+00:00"))
            version = int(key)
        except (KeyError, TypeError, ValueError):
            continue
        if until > now:
            out[version] = dict(mark)
    return out


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
        return None if got is None else AliasState.parse(got.data, got.generation)

    def alias_generation(self, model: str, alias: str = "champion") -> int:
        """The alias object's generation (0: no such object) from one metadata read: it changes
        with every move, so a reader holding a version knows cheaply whether to look again."""
        return gcs.generation(self.bucket, f"{model}/aliases/{alias}.json")

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

    def check_stored(
        self, model: str, version: int, manifest: Mapping[str, Any] | None = None
    ) -> Verification:
        """Check the artifact against its manifest from the object's metadata alone: one
        metadata read (``get_blob``), no content bytes, whatever the artifact's size.

        The live object's size, crc32c and md5 must equal the manifest's (a checksum Cloud
        Storage does not report, md5 of a composite object, is not compared), else not ok. Its
        generation must equal the manifest's too; same size and checksums at another generation
        are the same bytes written again (``warden restore`` writes every file anew), which only
        the sha256 can settle: then, as for a manifest that lacks the generation or both
        checksums (versions registered before they were recorded), the result is :meth:`verify`'s,
        which downloads and hashes the artifact. The sha256 of what is stored is not recomputed
        here: that is :meth:`load` (health's deep check) and housekeeping's daily sweep.
        """
        if manifest is None:
            manifest = self.manifest(model, version)
        files = manifest.get("files")
        record = files.get(ARTIFACT) if isinstance(files, Mapping) else None
        if not isinstance(record, Mapping):
            detail = f"{model} v{version}: {ARTIFACT} is not listed in its manifest"
            return Verification(model, version, False, detail)
        want = {k: str(record[k]) for k in ("crc32c", "md5") if record.get(k)}
        try:
            want_generation, want_size = int(record["generation"]), int(record["size"])
        except (KeyError, TypeError, ValueError):
            want_generation = want_size = 0
        if not want or not want_generation:
            return self.verify(model, version)  # an older manifest: the full sha256 check
        path = _version_dir(model, version) + ARTIFACT
        blob = self.bucket.get_blob(path)
        if blob is None:
            detail = f"{model} v{version}: gs://{self.bucket_name}/{path} is missing"
            return Verification(model, version, False, detail)
        generation, size = int(blob.generation or 0), int(blob.size or 0)
        live = {"crc32c": blob.crc32c, "md5": blob.md5_hash}
        compared = [k for k in want if live[k]]
        differ = [f"size {size} (manifest: {want_size})"] if size != want_size else []
        differ += [f"{k} {live[k]} (manifest: {want[k]})" for k in compared if live[k] != want[k]]
        if differ:
            detail = (
                f"{model} v{version}: {ARTIFACT} at generation {generation} does not match the "
                f"manifest (registered at generation {want_generation}): {', '.join(differ)}; "
                "refusing to use it"
            )
            return Verification(model, version, False, detail)
        if not compared:  # no checksum to compare (a composite object has no md5)
            return self.verify(model, version)
        if generation != want_generation:
            full = self.verify(model, version)
            detail = (
                f"{ARTIFACT} is at generation {generation}, registered at {want_generation}, "
                f"with the same size and {'/'.join(compared)} (rewritten, e.g. restored); "
            )
            return Verification(model, version, full.ok, detail + full.detail, full.sha256)
        detail = f"generation, size and {'/'.join(compared)} match the manifest (metadata only)"
        return Verification(model, version, True, detail)

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
        """Write the files (create-only), then the manifest: the commit point.

        Each file's record: ``sha256`` and ``size`` of the bytes, and the ``generation``,
        ``crc32c`` and ``md5`` Cloud Storage reported for the object written (base64, as in its
        metadata; a checksum it did not report is left out). :meth:`check_stored` compares those
        with the object's metadata without reading it.
        """
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
                **({"crc32c": written.crc32c} if written.crc32c else {}),
                **({"md5": written.md5} if written.md5 else {}),
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

    def _update_alias(
        self,
        model: str,
        alias: str,
        change: Callable[[gcs.Stored[Any] | None], dict[str, Any] | None],
        *,
        doing: str,
    ) -> gcs.Updated:
        """The alias object's compare-and-swap loop (moves and retirement marks alike)."""
        return gcs.update_json(
            self.bucket,
            f"{model}/aliases/{alias}.json",
            change,
            attempts=self._max_attempts,
            encode=self._dumps,
            conflict=(
                f"{model}: alias {alias!r} kept changing {doing} ({self._max_attempts} attempts)"
            ),
        )

    def _verify_target(self, model: str, version: int, verified: dict[int, int]) -> None:
        """Raise unless ``version`` verifies now. A version verified earlier in the same move is
        not hashed again while its manifest keeps the generation it had (files are never
        deleted before their manifest)."""
        blob = self.bucket.get_blob(_version_dir(model, version) + MANIFEST)
        if blob is None:
            raise VersionNotFound(
                f"{model}: version {version} does not exist (or was never completed)"
            )
        generation = int(blob.generation or 0)
        if verified.get(version) == generation:
            return
        check = self.verify(model, version)
        if not check.ok:
            raise IntegrityError(check.detail)
        verified[version] = generation

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
        """Move ``alias`` by compare-and-swap, only onto a version that verifies.

        ``decide(current)`` returns the version to point at, or None to leave the alias alone;
        it is called again with fresh state after every lost race, so its checks always hold
        against the state that is actually replaced. The target is verified (sha256 against its
        manifest) inside each attempt, after the alias was read: :class:`IntegrityError` if it
        does not verify, :class:`VersionNotFound` if it is gone or being retired.
        """
        kept: list[AliasState | None] = [None]  # what stays when no move is needed
        verified: dict[int, int] = {}  # version → manifest generation verified

        def change(stored: gcs.Stored[Any] | None) -> dict[str, Any] | None:
            current = None
            if stored is not None:
                current = AliasState.parse(stored.data, stored.generation)
            self._ensure_history(model, current)  # repair a history write a crash skipped
            kept[0] = None
            target = decide(current)
            if target is None:
                return None
            if current is not None and current.version == target:
                kept[0] = current  # already there: idempotent
                return None
            marks = _retiring(stored.data if stored else {}, self._clock())
            if target in marks:
                raise VersionNotFound(
                    f"{model}: v{target} is being retired by housekeeping (run "
                    f"{marks[target].get('by', '?')}); choose another version"
                )
            # Verified after this read of the alias: a retirement that began since marked the
            # alias and fails this write; one that ended before has deleted the manifest.
            self._verify_target(model, target, verified)
            new = AliasState(
                alias=alias,
                version=target,
                previous_version=current.version if current else None,
                seq=(current.seq + 1) if current else 1,
                changed_at=_iso(self._clock()),
                action=action,
                reason=reason,
                actor=actor,
            ).to_json()
            if stored is not None and stored.data.get("retiring"):
                new["retiring"] = stored.data["retiring"]  # housekeeping's marks stay
            return new

        got = self._update_alias(model, alias, change, doing="under us")
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
        promoted meanwhile. Returns the new state, or None if that condition failed. The version
        is verified inside the move (:meth:`move_alias`).
        """

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
        """Point ``champion`` back at the previous champion, or at version ``to``.

        The target is verified inside the move: after a lost race the decision is taken again
        on the fresh state, and whatever it picks then is verified before the move.
        """

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

        state = self.move_alias(model, decide, action="rollback", reason=reason, actor=actor)
        assert state is not None
        return state

    def mark_retiring(
        self, model: str, versions: Iterable[int], *, by: str, alias: str = "champion"
    ) -> list[int]:
        """Mark ``versions`` as being retired in the alias object, by compare-and-swap: from
        then on no move can land on them (until the mark expires). Returns the versions marked:
        never the alias's current target. With no champion yet the alias object is created
        without a target (:meth:`AliasState.parse` reads it as no alias) to hold the marks."""
        wanted = sorted(set(versions))
        marked: list[int] = []
        now = self._clock()

        def change(stored: gcs.Stored[Any] | None) -> dict[str, Any] | None:
            marked.clear()
            # No champion yet: the object is created without a target, to hold the marks.
            data = {"schema": SCHEMA, "alias": alias, "version": None}
            if stored is not None:
                data = stored.data
            current = data.get("version")
            marked.extend(v for v in wanted if v != current)
            if not marked:
                return None
            marks = {str(v): m for v, m in _retiring(data, now).items()}
            until = _iso(now + RETIRING_LEASE)
            for v in marked:
                marks[str(v)] = {"until": until, "by": by}
            return {**data, "retiring": marks}

        self._update_alias(model, alias, change, doing="while marking retirements")
        return list(marked)

    def clear_retiring(
        self, model: str, versions: Iterable[int], *, by: str, alias: str = "champion"
    ) -> None:
        """Drop ``by``'s marks on ``versions`` (and any expired mark)."""
        done = {str(v) for v in versions}
        now = self._clock()

        def change(stored: gcs.Stored[Any] | None) -> dict[str, Any] | None:
            if stored is None or not stored.data.get("retiring"):
                return None
            live = _retiring(stored.data, now)
            marks = {
                str(v): m for v, m in live.items() if not (str(v) in done and m.get("by") == by)
            }
            if marks == stored.data["retiring"]:
                return None
            data = {k: v for k, v in stored.data.items() if k != "retiring"}
            if marks:
                data["retiring"] = marks
            return data

        self._update_alias(model, alias, change, doing="while clearing retirements")

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
