"""Training data from Cloud Storage: ``gs://BUCKET/PREFIX/dt=YYYY-MM-DD/*.{csv,parquet}``.

:func:`read_training_frame` reads the partitions of a rolling window ending at ``as_of`` and
returns the requested columns plus a :class:`DataWindow` that pins every object generation read,
so a model's manifest records exactly what it was trained on.

Everything wrong with the data itself raises :class:`~warden.errors.DataError` (permanent: the
same data fails the same way). Other Google API errors propagate untouched: they are transient
and the caller retries. pandas and pyarrow are imported inside functions only, so importing this
module stays cheap for entry points that never read data.

Inputs are bounded before they cost anything (see the limits below): only the window's ``dt=``
folders are listed, one prefix per day, never the prefix's whole history; an object larger than
:data:`MAX_OBJECT_BYTES` or a window with more than :data:`MAX_WINDOW_FILES` data files is
refused from the listing, before any download; a file with more than :data:`MAX_COLUMNS`
columns is refused from its header or schema, before any row is parsed; only the wanted
columns are parsed (Parquet column projection, CSV ``usecols``); and error text that quotes data
(column names, values, object names) is shortened with :func:`clip_text` and
:func:`name_list`, because it ends up in logs (Cloud Logging caps an entry at 256 KB), run
markers, status files and events.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from warden.errors import DataError, RetryableError

if TYPE_CHECKING:
    import pandas as pd
    from google.cloud import storage

    from warden.config import DataSpec

log = logging.getLogger(__name__)

_DT = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Limits. Module constants until warden.yaml has a knob for them (data.max_object_bytes and
# data.max_window_files would be the keys).

#: Largest data object read, in bytes (checked against the listing, before downloading). An
#: object is held whole while it is parsed, and compressed Parquet decodes to several times its
#: size (6.5× for bench/scale.py's rounded floats: an 84 MiB file peaked at 1.4 GB), so the
#: memory a file needs depends on its encoding, not only on this limit: docs/scale.md sizes files
#: to a task's memory. A CSV parses to about its own size again.
MAX_OBJECT_BYTES = 256 * 1024 * 1024
#: Most data files in one window. Every file is one download (20-50 ms each on GCS), so 10,000
#: is already several minutes, the order of retrain_model's 540 s timeout: refusing up front
#: with the reason beats a timeout, and it bounds the listing's memory too.
MAX_WINDOW_FILES = 10_000
#: Most columns in one data file, checked from the CSV header or the Parquet schema before any
#: row is parsed. Warden models take tens to hundreds of features; a file far wider is a wrong
#: file or a hostile one (a 200k-column file once made a 2 MB log line).
MAX_COLUMNS = 10_000
#: Error messages quote at most this many names (columns, files) ...
ERROR_NAMES = 10
#: ... each shortened to this many characters ...
ERROR_NAME_CHARS = 80
#: ... and are cut at this length whatever they hold (the length ``runs`` keeps in status files
#: and events; a log entry stays far below Cloud Logging's 256 KB).
MAX_ERROR_CHARS = 2000
#: Folders scanned, on the "nothing in the window" error path only, to name the latest one.
LATEST_SCAN_FOLDERS = 10_000
#: The column :func:`read_training_frame` adds with ``row_days=True``: each row's ``dt=`` day.
#: Not a column name data files use; models select their configured features only.
ROW_DAY = "__warden_partition_day__"


def clip_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    tail = f"… ({len(text) - limit:,} more characters)"
    return text[: max(0, limit - len(tail))] + tail


def quote(value: Any, limit: int = ERROR_NAME_CHARS) -> str:
    """``repr`` of a name or value for a message, shortened to about ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else repr(value)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def name_list(names: Sequence[Any], limit: int = ERROR_NAMES) -> str:
    """Names as a Python list for a message: the first ``limit``, then "and N more"."""
    shown = "[" + ", ".join(quote(n) for n in names[:limit]) + "]"
    rest = len(names) - limit
    return f"{shown} and {rest:,} more" if rest > 0 else shown


def _data_error(message: str) -> DataError:
    return DataError(clip_text(message))


@dataclass(frozen=True)
class DataWindow:
    """What a training frame was read from. ``to_dict`` goes into the model's manifest.

    A summary, not a listing, so manifests and reports stay the same size however many files the
    window holds. ``files_sha256`` still pins exactly which objects were read: it is the sha256
    of their ``gs://bucket/name#generation`` lines in read order (oldest partition first, names
    sorted within one), joined by newlines; :func:`files_digest` recomputes it.
    """

    start: date
    end: date
    partition_count: int  # 'dt=YYYY-MM-DD' folders that held data files
    first_partition: str | None
    last_partition: str | None
    file_count: int
    bytes: int  # total size of the files read, as listed
    files_sha256: str
    rows: int
    missing: dict[str, float]  # share of missing values per returned column

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["end"] = self.end.isoformat()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataWindow:
        """Also reads the older form that listed every partition and file."""
        partitions, files = raw.get("partitions"), raw.get("files")
        if isinstance(partitions, list) and isinstance(files, list):
            return cls(
                start=date.fromisoformat(raw["start"]),
                end=date.fromisoformat(raw["end"]),
                partition_count=len(partitions),
                first_partition=partitions[0] if partitions else None,
                last_partition=partitions[-1] if partitions else None,
                file_count=len(files),
                bytes=int(raw.get("bytes", 0)),
                files_sha256=files_digest(files),
                rows=int(raw["rows"]),
                missing={str(k): float(v) for k, v in raw.get("missing", {}).items()},
            )
        return cls(
            start=date.fromisoformat(raw["start"]),
            end=date.fromisoformat(raw["end"]),
            partition_count=int(raw["partition_count"]),
            first_partition=raw.get("first_partition"),
            last_partition=raw.get("last_partition"),
            file_count=int(raw["file_count"]),
            bytes=int(raw["bytes"]),
            files_sha256=str(raw["files_sha256"]),
            rows=int(raw["rows"]),
            missing={str(k): float(v) for k, v in raw.get("missing", {}).items()},
        )


def files_digest(files: Sequence[str]) -> str:
    """sha256 of ``gs://bucket/name#generation`` lines joined by newlines (see DataWindow)."""
    return hashlib.sha256("\n".join(files).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class _Object:
    name: str
    leaf: str  # the path below the dt= folder
    generation: int
    size: int
    day: date | None = None  # the dt= partition it is in
    rows: int | None = None  # from the object's 'rows' metadata, when its writer set it


class WindowReader:
    """The data files of a rolling window, read one file at a time (memory stays per-file).

    Listing happens at construction, one ``dt=YYYY-MM-DD/`` prefix per day of the window (the
    prefix's history outside the window is never listed). No partition in the window, or none
    with data files of the configured format, is a :class:`DataError`; so is a data file larger
    than :data:`MAX_OBJECT_BYTES` or more than :data:`MAX_WINDOW_FILES` of them, both before
    anything is downloaded. :meth:`frames` yields coerced frames; :meth:`window` describes what
    was read once iteration is done.
    """

    def __init__(
        self,
        client: storage.Client,
        *,
        bucket: str,
        spec: DataSpec,
        columns: list[str],
        as_of: date,
        target: str | None = None,
        categorical: Sequence[str] = (),
        window_days: int | None = None,
        target_required: bool = True,
        day_column: str | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> None:
        """``plan`` (an earlier reader's :meth:`plan`) pins the files instead of listing: the
        shards of one monitor run read one listing, whatever lands in the window meanwhile."""
        if isinstance(as_of, datetime):  # a datetime is a date too; the window is whole days
            as_of = as_of.date()
        if not columns or len(set(columns)) != len(columns):
            raise ValueError(f"columns must be non-empty and unique, got {columns!r}")
        self._client = client
        self.bucket = bucket
        self.spec = spec
        self.columns = columns
        self.target = target
        self.categorical = frozenset(categorical)
        self.target_required = target_required
        self.wanted = [*columns, *([target] if target and target not in columns else [])]
        if day_column is not None and day_column in self.wanted:
            raise ValueError(f"day_column {day_column!r} is also a data column")
        self.day_column = day_column
        days_back = window_days or spec.window_days
        self.start = as_of - timedelta(days=days_back - 1)
        self.end = as_of
        self.ext = f".{spec.format}"
        self.root = f"gs://{bucket}/{spec.prefix}/"
        self.window_text = (
            f"{self.start.isoformat()}..{as_of.isoformat()} "
            f"(window_days={days_back}, as of {as_of.isoformat()})"
        )
        days = [self.start + timedelta(days=i) for i in range(days_back)]
        listing = (
            _listing_from_plan(plan)
            if plan is not None
            else _list_window(client, bucket, spec.prefix, days, self.ext, self.window_text)
        )
        if not listing.folders:
            latest, junk, odd = _latest_partition(client, bucket, spec.prefix)
            extra = f"; {odd:,} folder(s) not named dt=YYYY-MM-DD, e.g. {name_list(junk)}"
            raise _data_error(
                f"{self.root}: no dt= partitions in the window {self.window_text}; "
                f"latest partition found: {latest}{extra if odd else ''}"
            )
        self._chosen = listing.files
        if not self._chosen:
            found = name_list(listing.others, 5)
            if listing.other_count > len(listing.others):
                found += f" and {listing.other_count - len(listing.others):,} more"
            raise _data_error(
                f"{self.root}: {len(listing.folders)} partition(s) in the window "
                f"{self.window_text} but no {self.ext} files in them (found: {found}); "
                f"is data.format '{spec.format}' right?"
            )
        self.partitions = listing.partitions
        self.files = [f"gs://{bucket}/{o.name}#{o.generation}" for o in self._chosen]
        self.bytes = sum(o.size for o in self._chosen)
        self.rows = 0
        self._missing = dict.fromkeys(self.wanted, 0)

    def plan(self) -> dict[str, Any]:
        """The listing this reader reads, JSON-able (``plan=`` of another reader)."""
        return {
            "partitions": list(self.partitions),
            "files": [
                [o.name, o.leaf, o.generation, o.size, o.day.isoformat() if o.day else None]
                for o in self._chosen
            ],
        }

    def sizes(self) -> list[int]:
        """Each file's size in bytes, in read order."""
        return [o.size for o in self._chosen]

    def listed_rows(self) -> tuple[int, int]:
        """(rows the files' ``rows`` metadata declares, files that declare none): what the
        listing tells of the window's rows without downloading anything."""
        known = [o.rows for o in self._chosen if o.rows is not None]
        return sum(known), len(self._chosen) - len(known)

    def frames(self) -> Iterator[pd.DataFrame]:
        for _ordinal, _source, frame in self.parts():
            yield frame

    def parts(
        self, indices: Sequence[int] | None = None
    ) -> Iterator[tuple[int, str, pd.DataFrame]]:
        """``(ordinal, source, frame)`` for the files at ``indices`` of the read order (all by
        default): the file's place in the window, its ``gs://bucket/name#generation``, and its
        coerced rows. Empty files are skipped."""
        import numpy as np

        optional = () if self.target_required or not self.target else (self.target,)
        chosen = range(len(self._chosen)) if indices is None else indices
        for ordinal in chosen:
            obj = self._chosen[ordinal]
            uri = f"gs://{self.bucket}/{obj.name}"
            part = _read_object(
                self._client, self.bucket, obj, self.spec.format, uri, self.wanted, optional
            )
            if part is None or not len(part):
                continue
            part = _coerce(
                part, uri, self.columns, self.target, self.categorical, self.target_required
            )
            if self.day_column is not None and obj.day is not None:
                part[self.day_column] = np.datetime64(obj.day, "D")
            self.rows += len(part)
            for col in self.wanted:
                self._missing[col] += int(part[col].isna().sum())
            yield ordinal, self.files[ordinal], part

    @property
    def missing_counts(self) -> dict[str, int]:
        """Missing values per column in the rows read so far."""
        return dict(self._missing)

    def add_counts(self, rows: int, missing: Mapping[str, int]) -> None:
        """Count rows another reader of the same plan read (a shard's), for :meth:`window`."""
        self.rows += rows
        for col, n in missing.items():
            if col in self._missing:
                self._missing[col] += int(n)

    def window(self) -> DataWindow:
        return DataWindow(
            start=self.start,
            end=self.end,
            partition_count=len(self.partitions),
            first_partition=self.partitions[0] if self.partitions else None,
            last_partition=self.partitions[-1] if self.partitions else None,
            file_count=len(self.files),
            bytes=self.bytes,
            files_sha256=files_digest(self.files),
            rows=self.rows,
            missing={
                c: round(n / self.rows, 6) if self.rows else 0.0 for c, n in self._missing.items()
            },
        )


class RowSample:
    """A uniform random sample, without replacement, of at most ``limit`` rows of all the
    frames :meth:`add` is given, whatever their sizes and order.

    Bottom-k sampling: every row gets a uniform random key and the sample is the ``limit`` rows
    with the smallest keys, so every subset of ``limit`` rows is equally likely and a file's
    expected share of the sample is its share of the rows. Keys come from a generator seeded
    with ``seed`` — and, when :meth:`add` names the frame's ``source`` (a file's
    ``name#generation``), with that source too: then a file's rows get the same keys whoever
    reads it, so samples of disjoint parts of a window, merged (:meth:`state` /
    :meth:`merge`), are the sample one pass over the whole window draws (shards of a monitor
    run). The same frames with the same seed give the same sample.

    Memory stays bounded: a row whose key is above the largest key of a full sample can never
    enter it and is dropped at once, and the rows kept are cut back to ``limit`` whenever they
    pass ``2 × limit``; so at most ``2 × limit`` rows are held, plus the frame being added. Cost
    per frame: one key per row, plus the cut back, amortised over ``limit`` kept rows.
    :meth:`frame` returns the sample in the order the rows were added (by ``ordinal``, then by
    position in the frame).
    """

    #: Columns :meth:`state` adds to the rows: each row's key and its place in the read order.
    KEY, ORDER = "__warden_sample_key", "__warden_sample_order"

    def __init__(self, limit: int, *, seed: int) -> None:
        import numpy as np

        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.seed = seed
        self.rows = 0  # rows offered so far
        self._rng = np.random.default_rng(seed)
        self._adds = 0
        # (rows, their keys, their place in the read order), in added order
        self._parts: list[tuple[pd.DataFrame, Any, Any]] = []
        self._held = 0
        self._cut = 1.0  # keys at or above this cannot enter the sample

    @property
    def held(self) -> int:
        """Rows held now (at most ``2 × limit``)."""
        return self._held

    def add(self, frame: pd.DataFrame, *, source: str = "", ordinal: int | None = None) -> None:
        """Offer ``frame``'s rows. ``source`` names where they come from (their keys then
        depend only on the seed and the source); ``ordinal`` is the frame's place in the read
        order (default: one more than the previous call's)."""
        import numpy as np

        n = len(frame)
        ordinal = self._adds if ordinal is None else ordinal
        self._adds = max(self._adds, ordinal) + 1
        if n == 0:
            return
        if source:
            entropy = int.from_bytes(hashlib.sha256(source.encode()).digest()[:8], "big")
            keys = np.random.default_rng([self.seed, entropy]).random(n)
        else:
            keys = self._rng.random(n)
        self.rows += n
        keep = np.flatnonzero(keys < self._cut)
        if keep.size == 0:
            return
        order = (np.int64(ordinal) << np.int64(32)) + keep.astype(np.int64)
        if keep.size < n:
            frame, keys = frame.iloc[keep], keys[keep]
        self._offer(frame, keys, order)

    def _offer(self, frame: pd.DataFrame, keys: Any, order: Any) -> None:
        self._parts.append((frame, keys, order))
        self._held += len(keys)
        if self._held > 2 * self.limit:
            self._parts = [self._smallest()]
            self._held = min(self._held, self.limit)
            self._cut = float(self._parts[0][1].max())

    def _smallest(self) -> tuple[pd.DataFrame, Any, Any]:
        """The held rows with the ``limit`` smallest keys, in read order."""
        import numpy as np
        import pandas as pd

        frames, keys, orders = zip(*self._parts, strict=True)
        frame = pd.concat(frames) if len(frames) > 1 else frames[0]
        key, order = np.concatenate(keys), np.concatenate(orders)
        if key.size > self.limit:
            chosen = np.argpartition(key, self.limit - 1)[: self.limit]
            frame, key, order = frame.iloc[chosen], key[chosen], order[chosen]
        placed = np.argsort(order, kind="stable")
        return frame.iloc[placed], key[placed], order[placed]

    def frame(self) -> pd.DataFrame | None:
        """The sample (index 0..n-1), or None if no row was added."""
        if not self._parts:
            return None
        return self._smallest()[0].reset_index(drop=True)

    def state(self) -> bytes:
        """The rows held, with their keys and places, as Parquet (for :meth:`merge`)."""
        import pandas as pd

        if self._parts:
            frame, key, order = self._smallest()
        else:
            frame, key, order = pd.DataFrame(), [], []
        frame = frame.reset_index(drop=True).assign(**{self.KEY: key, self.ORDER: order})
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()

    def merge(self, state: bytes, *, rows: int) -> None:
        """Add the sample another :class:`RowSample` (same seed, sources named) drew from
        ``rows`` rows (its :meth:`state`)."""
        import pandas as pd

        frame = pd.read_parquet(io.BytesIO(state))
        self.rows += rows
        if not len(frame):
            return
        keys = frame.pop(self.KEY).to_numpy()
        order = frame.pop(self.ORDER).to_numpy()
        self._offer(frame, keys, order)


def read_training_frame(
    client: storage.Client,
    *,
    bucket: str,
    spec: DataSpec,
    columns: list[str],
    as_of: date,
    target: str | None = None,
    categorical: Sequence[str] = (),
    row_days: bool = False,
) -> tuple[pd.DataFrame, DataWindow]:
    """Read ``columns`` (and ``target``) from the partitions ``as_of - window_days + 1 .. as_of``.

    Feature columns come back as float64 with NaN for missing values (imputation belongs to the
    pipeline), ``categorical`` ones as strings with <NA>. ``target`` keeps its dtype but may not
    be null; it is appended to the frame when it is not already one of ``columns``. With
    ``row_days``, the frame also carries each row's partition day (datetime64) in
    :data:`ROW_DAY`, last: the time-based holdout splits on it; no model selects it as a feature.
    """
    import pandas as pd

    reader = WindowReader(
        client,
        bucket=bucket,
        spec=spec,
        columns=columns,
        as_of=as_of,
        target=target,
        categorical=categorical,
        day_column=ROW_DAY if row_days else None,
    )
    frames = list(reader.frames())
    if reader.rows == 0:
        raise DataError(
            f"{reader.root}: {len(reader.files)} {reader.ext} file(s) in the window "
            f"{reader.window_text} but zero rows in them"
        )
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame.reset_index(drop=True)

    empty = [c for c in columns if frame[c].isna().all()]
    if empty:  # a feature with no values at all cannot be imputed or scaled
        raise DataError(
            f"{reader.root}: column(s) {name_list(empty)} have no values at all in the window "
            f"{reader.window_text} ({reader.rows} rows)"
        )
    if reader.rows < spec.min_rows:
        raise DataError(
            f"{reader.root}: only {reader.rows} rows in the window {reader.window_text}; "
            f"need at least {spec.min_rows} (data.min_rows)"
        )
    window = reader.window()
    log.info(
        "read %d rows from %d file(s) under %s (%s)",
        reader.rows,
        len(reader.files),
        reader.root,
        reader.window_text,
    )
    return frame, window


@dataclass
class _Listing:
    folders: list[date]  # days of the window whose dt= folder holds any object
    partitions: list[str]  # 'dt=YYYY-MM-DD' folders that hold data files, oldest first
    files: list[_Object]  # data files of the format, oldest day first, names sorted
    others: list[str]  # a few other names in those folders, for the error message
    other_count: int


def _list_window(
    client: storage.Client,
    bucket: str,
    prefix: str,
    days: Sequence[date],
    ext: str,
    window_text: str,
) -> _Listing:
    """List ``PREFIX/dt=DAY/`` for each day of the window, and only those.

    Refuses a data file over :data:`MAX_OBJECT_BYTES`, or more than :data:`MAX_WINDOW_FILES`
    data files, as soon as the listing shows it: nothing has been downloaded yet.
    """
    from google.api_core.exceptions import NotFound

    limit, most = MAX_OBJECT_BYTES, MAX_WINDOW_FILES
    listing = _Listing([], [], [], [], 0)
    try:
        for day in days:
            folder = f"{prefix}/dt={day.isoformat()}/"
            found: list[_Object] = []
            seen = False
            for blob in client.list_blobs(bucket, prefix=folder):
                seen = True
                leaf = blob.name[len(folder) :]
                if not _is_data_file(leaf, ext):
                    listing.other_count += 1
                    if len(listing.others) < 5:
                        listing.others.append(leaf)
                    continue
                obj = _Object(
                    blob.name,
                    leaf,
                    int(blob.generation or 0),
                    int(blob.size or 0),
                    day,
                    _rows_metadata(getattr(blob, "metadata", None)),
                )
                if obj.size > limit:
                    raise _data_error(
                        f"gs://{bucket}/{obj.name}#{obj.generation}: {obj.size:,} bytes, over "
                        f"the {limit:,}-byte limit for one data file (MAX_OBJECT_BYTES); "
                        "not downloaded. Write the partition as smaller files."
                    )
                found.append(obj)
                if len(listing.files) + len(found) > most:
                    raise _data_error(
                        f"gs://{bucket}/{prefix}/: more than {most:,} {ext} files in the window "
                        f"{window_text} (MAX_WINDOW_FILES); nothing was downloaded. Compact "
                        "the partitions into fewer, larger files."
                    )
            if seen:
                listing.folders.append(day)
            if found:
                listing.partitions.append(f"dt={day.isoformat()}")
                listing.files.extend(sorted(found, key=lambda o: o.name))
    except NotFound:
        raise DataError(f"gs://{bucket}: bucket not found") from None
    return listing


#: Custom metadata key a writer may set to the object's row count (warden.serving's
#: prediction log does): the job runner's ``auto`` choice reads it from the listing.
ROWS_METADATA = "rows"


def _rows_metadata(metadata: Mapping[str, str] | None) -> int | None:
    text = (metadata or {}).get(ROWS_METADATA)
    try:
        return int(text) if text is not None and int(text) >= 0 else None
    except ValueError:
        return None  # someone else's 'rows': not ours to trust


def _listing_from_plan(plan: Mapping[str, Any]) -> _Listing:
    try:
        files = [
            _Object(
                str(name), str(leaf), int(gen), int(size), date.fromisoformat(day) if day else None
            )
            for name, leaf, gen, size, day in plan["files"]
        ]
        partitions = [str(p) for p in plan["partitions"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"a window plan is malformed: {exc}") from None
    folders = sorted({o.day for o in files if o.day is not None})
    return _Listing(folders or [date.min], partitions, files, [], 0)


def _latest_partition(
    client: storage.Client, bucket: str, prefix: str
) -> tuple[str, list[str], int]:
    """The newest ``dt=`` folder under ``prefix`` (or "none"), and a few of the folders that are
    not dates with their count.

    Only for the error message when the window is empty: it lists folder names (one per day of
    history, not files) and stops after :data:`LATEST_SCAN_FOLDERS` of them.
    """
    latest: date | None = None
    junk: list[str] = []
    odd = scanned = 0
    it = client.list_blobs(bucket, prefix=f"{prefix}/dt=", delimiter="/")
    for page in it.pages:
        for folder in sorted(page.prefixes):
            scanned += 1
            name = folder[len(prefix) + 1 :].rstrip("/")
            day = _parse_dt(name[3:])
            if day is None:
                odd += 1
                if len(junk) < 3:
                    junk.append(name)
            elif latest is None or day > latest:
                latest = day
        if scanned >= LATEST_SCAN_FOLDERS:
            break
    return (f"dt={latest.isoformat()}" if latest else "none"), junk, odd


def _parse_dt(text: str) -> date | None:
    # fromisoformat alone also takes '20260101' and week dates; partitions are YYYY-MM-DD only.
    if not _DT.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _is_data_file(leaf: str, ext: str) -> bool:
    # Direct children only, and no Hadoop/Spark markers (_SUCCESS, _temporary/, .crc files).
    return "/" not in leaf and leaf.endswith(ext) and not leaf.startswith(("_", "."))


def _read_object(
    client: storage.Client,
    bucket: str,
    obj: _Object,
    fmt: str,
    uri: str,
    wanted: list[str],
    optional: Sequence[str] = (),
) -> pd.DataFrame | None:
    """Download the exact generation listed and parse it; ``None`` for a zero-byte object."""
    from google.api_core.exceptions import NotFound

    if obj.size == 0:
        return None
    blob = client.bucket(bucket).blob(obj.name, generation=obj.generation or None)
    try:
        payload = blob.download_as_bytes()
    except NotFound:
        # Replaced or deleted between listing and download: a fresh listing will be consistent.
        raise RetryableError(f"{uri}#{obj.generation}: changed while being read; retry") from None
    if not payload:
        return None
    return _parse(payload, fmt, uri, wanted, optional)


def _parse(
    payload: bytes, fmt: str, uri: str, wanted: list[str], optional: Sequence[str] = ()
) -> pd.DataFrame:
    """Parse only the ``wanted`` columns: however wide the file, the others are never built."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = None
    try:
        if fmt == "parquet":
            pfile = pq.ParquetFile(io.BytesIO(payload))
            names = list(pfile.schema_arrow.names)
            _check_width(names, uri)
            present = [c for c in wanted if c in names]
            if set(wanted) - set(optional) <= set(names):  # parquet is columnar: read only these
                # One block per column, the Arrow buffers freed as they convert: measured on
                # an 84 MiB file, peak 1,950 → 1,400 MB and 0.95 → 0.58 s (docs/scale.md).
                table = pfile.read(columns=present)
                frame = table.to_pandas(split_blocks=True, self_destruct=True)
                del table
        else:
            names = _csv_header(payload)
            _check_width(names, uri)
            available = set(names)
            present = [c for c in wanted if c in available]
            if set(wanted) - set(optional) <= available:
                # usecols: the parser skips the other columns' values instead of building them.
                # low_memory=False: infer each column's dtype from the whole file, not per chunk.
                frame = pd.read_csv(io.BytesIO(payload), usecols=present, low_memory=False)
    except (ValueError, OSError, csv.Error, pa.ArrowException) as exc:  # ParserError, decode...
        raise _data_error(f"{uri}: cannot parse as {fmt}: {_first_line(exc)}") from None
    if frame is not None:
        for col in wanted:
            if col not in frame.columns:  # an optional column (labels not in yet)
                frame[col] = pd.NA
        return frame[wanted]
    missing = [c for c in wanted if c not in names]
    raise _data_error(
        f"{uri}: missing column(s) {name_list(missing)}; available: {name_list(names)}"
    )


def _check_width(names: list[str], uri: str) -> None:
    if len(names) > MAX_COLUMNS:
        raise _data_error(
            f"{uri}: {len(names):,} columns, more than the {MAX_COLUMNS:,}-column limit for one "
            f"data file (MAX_COLUMNS); nothing was parsed. First columns: {name_list(names)}"
        )


def _csv_header(payload: bytes) -> list[str]:
    """The column names of a CSV file as pandas reads them (blank lines before it skipped),
    without parsing any row."""
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(payload), encoding="utf-8-sig", newline=""))
    for row in reader:
        if row:
            return row
    raise ValueError("no header row")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _coerce(
    frame: pd.DataFrame,
    uri: str,
    columns: list[str],
    target: str | None,
    categorical: frozenset[str] = frozenset(),
    target_required: bool = True,
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd
    from pandas.api import types as pdt

    out = {}
    for col in frame.columns:
        series = frame[col]
        if col == target:
            nulls = int(series.isna().sum())
            if nulls and target_required:
                raise DataError(
                    f"{uri}: target column {target!r} has {nulls} missing value(s); "
                    "every training row needs a label"
                )
            out[col] = series
            continue
        if col in categorical:
            # Categories are labels: keep them as text; blank counts as missing.
            text = series.astype("string").str.strip()
            out[col] = text.mask(text == "")
            continue
        if pdt.is_bool_dtype(series) or (
            pdt.is_numeric_dtype(series) and not pdt.is_complex_dtype(series)
        ):
            values = series.astype("float64")
        elif pdt.is_datetime64_any_dtype(series) or pdt.is_timedelta64_dtype(series):
            raise DataError(f"{uri}: column {col!r} is {series.dtype}, not numeric")
        else:
            # Blank strings count as missing, as they do in CSV; anything else must parse.
            text = series.astype("string").str.strip()
            text = text.mask(text == "")
            values = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = values.isna() & text.notna()
            if bad.any():
                example = text[bad].iloc[0]
                raise _data_error(
                    f"{uri}: column {col!r} has {int(bad.sum())} non-numeric "
                    f"value(s), e.g. {quote(example)}"
                )
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            raise DataError(f"{uri}: column {col!r} has {int(infinite.sum())} infinite value(s)")
        out[col] = values
    result = pd.DataFrame(out, index=frame.index)
    return result[[*columns, *([target] if target and target not in columns else [])]]
