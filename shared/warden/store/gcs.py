"""The one Cloud Storage helper: reads with their generation, create-only and compare-and-swap
writes, the compare-and-swap loop, conditional deletes, and the package's one backoff policy.

Every module that writes conditionally goes through here; no other module passes
``if_generation_match`` itself (``tests/test_store_gcs.py`` holds that).

* :func:`read_json` / :func:`read_bytes` — an object's content and the generation it was read at
  (:class:`Stored`), or ``None`` when it does not exist. JSON that does not parse is an
  :class:`~warden.errors.IntegrityError`.
* :func:`create` — create-only write (``if_generation_match=0``).
* :func:`write_if` — compare-and-swap write (``if_generation_match=<generation read>``; 0 creates).
  Both return :class:`Written` (the new generation) when the write took effect, ``None`` when
  another writer got there first.
* :func:`update_json` — the compare-and-swap loop: read → ``change`` → write at the generation
  read → on a lost race back off (:data:`BACKOFF`), re-read and call ``change`` again, at most
  ``attempts`` times, then :class:`~warden.errors.ConflictError`. Returns :class:`Updated`.
* :func:`delete_if` — delete only at a given generation; ``False`` when the object is gone or was
  replaced meanwhile (then it is left alone).
* :data:`BACKOFF` — the loops' numbers for :class:`warden.retry.Backoff`, the package's one retry
  policy (re-exported here as ``Backoff``).

Owner read-back after a 412. google-cloud-storage retries an upload after a transient error (a
timeout, a 5xx, a dropped connection), conditional ones included. When the first attempt did land,
the retry fails its precondition: a 412 for a write that is in fact ours. So every create-only and
compare-and-swap write stamps a unique owner token in the object's custom metadata
(``metadata={"warden-owner": token}``). On a 412 the helper reads the object's metadata back: if
it carries our token and our bytes (md5 and size), the write is ours and the result is a
:class:`Written` with the object's generation and ``recovered=True``; anything else is a lost race
(``None``). A token is unique per call unless the caller passes ``owner=``; the same token with the
same bytes on a later call is then recognised as "already done". A conditional delete has no such
marker: a retried delete that had landed reads as "gone" (``False``).

Imports: only :mod:`warden.errors`, :mod:`warden.logs`, Google's libraries and the standard
library. Everything in :mod:`warden.store`, :mod:`warden.alerts.state` and :mod:`warden.jobs` that
touches storage conditionally imports this module; it imports none of them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from warden.errors import ConflictError, IntegrityError
from warden.logs import fields
from warden.retry import Backoff

if TYPE_CHECKING:
    from google.cloud import storage

__all__ = [
    "BACKOFF",
    "OWNER_KEY",
    "Backoff",
    "Stored",
    "Updated",
    "Written",
    "create",
    "delete_if",
    "dumps",
    "generation",
    "new_owner",
    "read_bytes",
    "read_json",
    "update_json",
    "write_if",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The custom-metadata key holding the token of the call that wrote the object.
OWNER_KEY = "warden-owner"
JSON_TYPE = "application/json"


#: The compare-and-swap loops' backoff (:class:`warden.retry.Backoff`; callers may pass fewer or
#: more ``attempts``).
BACKOFF = Backoff()


@dataclass(frozen=True)
class Stored(Generic[T]):
    """An object's content (bytes, or parsed JSON) and the generation it was read at."""

    data: T
    generation: int


@dataclass(frozen=True)
class Written:
    """A conditional write that took effect.

    ``generation``: the object's generation now. ``owner``: the token stamped in its metadata.
    ``recovered``: the write came back as a 412 but the object carries our token and bytes — the
    client library retried a write of ours that had landed. ``crc32c`` / ``md5``: the object's
    checksums as Cloud Storage reports them (base64), None when it reports none (``md5`` for a
    composite object). One generation of an object has one content, so they take no part in
    equality.
    """

    generation: int
    owner: str
    recovered: bool = False
    crc32c: str | None = field(default=None, compare=False)
    md5: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Updated:
    """The outcome of :func:`update_json`.

    ``data``: the object's content after the call — what was written, or, when ``change`` asked
    for no write, what was read (``None``: no object). ``generation``: the generation of that
    content (0: no object). ``written``: the write, or ``None`` when ``change`` returned ``None``.
    """

    data: Any
    generation: int
    written: Written | None


def new_owner() -> str:
    """A fresh owner token: unique per write call."""
    return uuid.uuid4().hex


def dumps(obj: Any) -> bytes:
    """Compact JSON with sorted keys (non-JSON values as ``str``): the default serialisation."""
    return json.dumps(obj, sort_keys=True, default=str).encode()


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


# -- reading -------------------------------------------------------------------------------------
def read_bytes(bucket: storage.Bucket, name: str) -> Stored[bytes] | None:
    """The object's bytes and generation, or None when it does not exist."""
    from google.api_core.exceptions import NotFound

    blob = bucket.blob(name)
    try:
        data: bytes = blob.download_as_bytes()
    except NotFound:
        return None
    return Stored(data, int(blob.generation or 0))


def generation(bucket: storage.Bucket, name: str) -> int:
    """The object's generation from one metadata read (0: no object): enough to tell whether a
    copy read earlier is still current."""
    blob = bucket.get_blob(name)
    return 0 if blob is None else int(blob.generation or 0)


def read_json(bucket: storage.Bucket, name: str) -> Stored[Any] | None:
    """The object's parsed JSON and generation, or None when it does not exist."""
    got = read_bytes(bucket, name)
    if got is None:
        return None
    try:
        return Stored(json.loads(got.data), got.generation)
    except ValueError as exc:  # UnicodeDecodeError included
        raise IntegrityError(f"gs://{bucket.name}/{name}: not valid JSON: {exc}") from exc


# -- writing -------------------------------------------------------------------------------------
def write_if(
    bucket: storage.Bucket,
    name: str,
    data: bytes | str,
    *,
    generation: int,
    content_type: str | None = None,
    owner: str | None = None,
    read_back: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> Written | None:
    """Write ``data`` only if the object still has ``generation`` (0: only if it does not exist).
    ``metadata``: custom metadata to set besides the owner token.

    Returns the write, or None when the precondition failed because another writer got there
    first. A 412 whose object carries our owner token and bytes is our own write, retried by the
    client library: a :class:`Written` with ``recovered=True``. ``read_back=False`` skips that
    check (one read) where whose write it was does not matter (a marker).
    """
    from google.api_core.exceptions import PreconditionFailed

    body = data.encode() if isinstance(data, str) else data
    if content_type is None and isinstance(data, str):
        content_type = "text/plain"
    token = owner or new_owner()
    blob = bucket.blob(name)
    blob.metadata = {**(metadata or {}), OWNER_KEY: token}
    try:
        blob.upload_from_string(body, content_type=content_type, if_generation_match=generation)
    except PreconditionFailed:
        return _read_back(bucket, name, token, body) if read_back else None
    return Written(
        int(blob.generation or 0), token, crc32c=blob.crc32c or None, md5=blob.md5_hash or None
    )


def create(
    bucket: storage.Bucket,
    name: str,
    data: bytes | str,
    *,
    content_type: str | None = None,
    owner: str | None = None,
    read_back: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> Written | None:
    """Create-only write: None when the object exists already (and is not ours)."""
    return write_if(
        bucket,
        name,
        data,
        generation=0,
        content_type=content_type,
        owner=owner,
        read_back=read_back,
        metadata=metadata,
    )


def _read_back(bucket: storage.Bucket, name: str, owner: str, body: bytes) -> Written | None:
    """After a 412: our write if the object carries ``owner`` and ``body``; else None."""
    blob = bucket.get_blob(name)
    if blob is None or (blob.metadata or {}).get(OWNER_KEY) != owner:
        return None
    if blob.size is not None and int(blob.size) != len(body):
        return None
    if blob.md5_hash and blob.md5_hash != _md5_b64(body):
        return None
    generation = int(blob.generation or 0)
    log.info(
        "a 412 was our own write, retried by the client library",
        extra=fields(object=f"gs://{bucket.name}/{name}", generation=generation),
    )
    return Written(
        generation, owner, recovered=True, crc32c=blob.crc32c or None, md5=blob.md5_hash or None
    )


def update_json(
    bucket: storage.Bucket,
    name: str,
    change: Callable[[Stored[Any] | None], Any],
    *,
    attempts: int | None = None,
    policy: Backoff = BACKOFF,
    encode: Callable[[Any], bytes] = dumps,
    start: Stored[Any] | None = None,
    conflict: str | None = None,
) -> Updated:
    """Read-modify-write by compare-and-swap until it sticks.

    ``change(current)`` gets a deep copy of the object's content and its generation (None: no
    object) and returns the new content, or None for "no write needed". It must be safe to call
    again: after a lost race it runs with fresh state. ``start``: the state already read, used for
    the first attempt instead of reading. After ``attempts`` lost races (``policy.attempts`` by
    default) raise :class:`~warden.errors.ConflictError` (message ``conflict`` if given).
    """
    tries = policy.attempts if attempts is None else attempts
    current = start
    for attempt in range(tries):
        if attempt or start is None:
            current = read_json(bucket, name)
        view = None if current is None else Stored(copy.deepcopy(current.data), current.generation)
        new = change(view)
        if new is None:
            if current is None:
                return Updated(None, 0, None)
            return Updated(current.data, current.generation, None)
        written = write_if(
            bucket,
            name,
            encode(new),
            generation=0 if current is None else current.generation,
            content_type=JSON_TYPE,
        )
        if written is not None:
            return Updated(new, written.generation, written)
        if attempt + 1 < tries:
            policy.pause(attempt)
    raise ConflictError(conflict or f"gs://{bucket.name}/{name}: lost {tries} races")


# -- deleting ------------------------------------------------------------------------------------
def delete_if(bucket: storage.Bucket, name: str, generation: int) -> bool:
    """Delete the object only if it still has ``generation``. False if it is gone or was
    replaced meanwhile (then it is left alone)."""
    from google.api_core.exceptions import NotFound, PreconditionFailed

    try:
        bucket.blob(name).delete(if_generation_match=generation)
    except (NotFound, PreconditionFailed):
        return False
    return True
