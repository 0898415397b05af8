"""Training data from Cloud Storage: ``gs://BUCKET/PREFIX/dt=YYYY-MM-DD/*.{csv,parquet}``.

:func:`read_training_frame` reads the partitions of a rolling window ending at ``as_of`` and
returns the requested columns plus a :class:`DataWindow` that pins every object generation read,
so a model's manifest records exactly what it was trained on.

Everything wrong with the data itself raises :class:`~warden.errors.DataError` (permanent: the
same data fails the same way). Other Google API errors propagate untouched: they are transient
and the caller retries. pandas and pyarrow are imported inside functions only, so importing this
module stays cheap for entry points that never read data.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Sequence
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


@dataclass(frozen=True)
class DataWindow:
    """What a training frame was read from. ``to_dict`` goes into the model's manifest."""

    start: date
    end: date
    partitions: list[str]  # 'dt=YYYY-MM-DD' folders that held data files, oldest first
    files: list[str]  # 'gs://bucket/name#generation', in read order
    rows: int
    missing: dict[str, float]  # share of missing values per returned column

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["end"] = self.end.isoformat()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataWindow:
        return cls(
            start=date.fromisoformat(raw["start"]),
            end=date.fromisoformat(raw["end"]),
            partitions=list(raw["partitions"]),
            files=list(raw["files"]),
            rows=int(raw["rows"]),
            missing={str(k): float(v) for k, v in raw.get("missing", {}).items()},
        )


@dataclass(frozen=True)
class _Object:
    name: str
    leaf: str  # the path below the dt= folder
    generation: int
    size: int


class WindowReader:
    """The data files of a rolling window, read one file at a time (memory stays per-file).

    Listing happens at construction: no partition in the window, or none with data files of the
    configured format, is a :class:`DataError`. :meth:`frames` yields coerced frames;
    :meth:`window` describes what was read once iteration is done.
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
    ) -> None:
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
        days_back = window_days or spec.window_days
        self.start = as_of - timedelta(days=days_back - 1)
        self.end = as_of
        self.ext = f".{spec.format}"
        self.root = f"gs://{bucket}/{spec.prefix}/"
        self.window_text = (
            f"{self.start.isoformat()}..{as_of.isoformat()} "
            f"(window_days={days_back}, as of {as_of.isoformat()})"
        )
        by_day = _list_partitions(client, bucket, spec.prefix)
        in_window = {d: objs for d, objs in by_day.items() if self.start <= d <= as_of}
        if not in_window:
            latest = f"dt={max(by_day).isoformat()}" if by_day else "none"
            raise DataError(
                f"{self.root}: no dt= partitions in the window {self.window_text}; "
                f"latest partition found: {latest}"
            )
        days = sorted(in_window)
        data = {d: [o for o in in_window[d] if _is_data_file(o.leaf, self.ext)] for d in days}
        self._chosen = [o for d in days for o in data[d]]
        if not self._chosen:
            others = sorted({o.leaf for d in days for o in in_window[d]})
            raise DataError(
                f"{self.root}: {len(days)} partition(s) in the window {self.window_text} but no "
                f"{self.ext} files in them (found: {', '.join(others[:5])}); "
                f"is data.format '{spec.format}' right?"
            )
        self.partitions = [f"dt={d.isoformat()}" for d in days if data[d]]
        self.files = [f"gs://{bucket}/{o.name}#{o.generation}" for o in self._chosen]
        self.rows = 0
        self._missing = dict.fromkeys(self.wanted, 0)

    def frames(self) -> Iterator[pd.DataFrame]:
        optional = () if self.target_required or not self.target else (self.target,)
        for obj in self._chosen:
            uri = f"gs://{self.bucket}/{obj.name}"
            part = _read_object(
                self._client, self.bucket, obj, self.spec.format, uri, self.wanted, optional
            )
            if part is None or not len(part):
                continue
            part = _coerce(
                part, uri, self.columns, self.target, self.categorical, self.target_required
            )
            self.rows += len(part)
            for col in self.wanted:
                self._missing[col] += int(part[col].isna().sum())
            yield part

    def window(self) -> DataWindow:
        return DataWindow(
            start=self.start,
            end=self.end,
            partitions=self.partitions,
            files=self.files,
            rows=self.rows,
            missing={
                c: round(n / self.rows, 6) if self.rows else 0.0 for c, n in self._missing.items()
            },
        )


def read_training_frame(
    client: storage.Client,
    *,
    bucket: str,
    spec: DataSpec,
    columns: list[str],
    as_of: date,
    target: str | None = None,
    categorical: Sequence[str] = (),
) -> tuple[pd.DataFrame, DataWindow]:
    """Read ``columns`` (and ``target``) from the partitions ``as_of - window_days + 1 .. as_of``.

    Feature columns come back as float64 with NaN for missing values (imputation belongs to the
    pipeline), ``categorical`` ones as strings with <NA>. ``target`` keeps its dtype but may not
    be null; it is appended to the frame when it is not already one of ``columns``.
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
            f"{reader.root}: column(s) {empty} have no values at all in the window "
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


def _list_partitions(client: storage.Client, bucket: str, prefix: str) -> dict[date, list[_Object]]:
    from google.api_core.exceptions import NotFound

    by_day: dict[date, list[_Object]] = {}
    junk: set[str] = set()
    try:
        for blob in client.list_blobs(bucket, prefix=f"{prefix}/dt="):
            folder, _, leaf = blob.name[len(prefix) + 1 :].partition("/")  # 'dt=...', rest
            day = _parse_dt(folder[3:])
            if day is None:
                junk.add(folder)
                continue
            by_day.setdefault(day, []).append(
                _Object(blob.name, leaf, int(blob.generation or 0), int(blob.size or 0))
            )
    except NotFound:
        raise DataError(f"gs://{bucket}: bucket not found") from None
    for folder in sorted(junk):
        log.warning(
            "ignoring gs://%s/%s/%s/: not a dt=YYYY-MM-DD partition", bucket, prefix, folder
        )
    for objs in by_day.values():
        objs.sort(key=lambda o: o.name)
    return by_day


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
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = None
    try:
        if fmt == "parquet":
            pfile = pq.ParquetFile(io.BytesIO(payload))
            names = list(pfile.schema_arrow.names)
            present = [c for c in wanted if c in names]
            if set(wanted) - set(optional) <= set(names):  # parquet is columnar: read only these
                frame = pfile.read(columns=present).to_pandas()
        else:
            # low_memory=False: infer each column's dtype from the whole file, not per chunk.
            frame = pd.read_csv(io.BytesIO(payload), low_memory=False)
            names = [str(c) for c in frame.columns]
            if set(wanted) - set(optional) <= set(names):
                frame = frame[[c for c in wanted if c in names]]
            else:
                frame = None
    except (ValueError, OSError, pa.ArrowException) as exc:  # ParserError, ArrowInvalid, decode
        raise DataError(f"{uri}: cannot parse as {fmt}: {_first_line(exc)}") from None
    if frame is not None:
        for col in wanted:
            if col not in frame.columns:  # an optional column (labels not in yet)
                frame[col] = pd.NA
        return frame[wanted]
    missing = [c for c in wanted if c not in names]
    raise DataError(f"{uri}: missing column(s) {missing}; available: {names}")


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
                raise DataError(
                    f"{uri}: column {col!r} has {int(bad.sum())} non-numeric "
                    f"value(s), e.g. {example!r}"
                )
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            raise DataError(f"{uri}: column {col!r} has {int(infinite.sum())} infinite value(s)")
        out[col] = values
    result = pd.DataFrame(out, index=frame.index)
    return result[[*columns, *([target] if target and target not in columns else [])]]
