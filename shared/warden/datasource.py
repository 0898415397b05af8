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


def read_training_frame(
    client: storage.Client,
    *,
    bucket: str,
    spec: DataSpec,
    columns: list[str],
    as_of: date,
    target: str | None = None,
) -> tuple[pd.DataFrame, DataWindow]:
    """Read ``columns`` (and ``target``) from the partitions ``as_of - window_days + 1 .. as_of``.

    Feature columns come back as float64 with NaN for missing values (imputation belongs to the
    pipeline). ``target`` keeps its dtype but may not be null; it is appended to the frame when
    it is not already one of ``columns``.
    """
    import pandas as pd

    if isinstance(as_of, datetime):  # a datetime is a date too; the window is whole days
        as_of = as_of.date()
    if not columns or len(set(columns)) != len(columns):
        raise ValueError(f"columns must be non-empty and unique, got {columns!r}")
    wanted = [*columns, *([target] if target and target not in columns else [])]

    start = as_of - timedelta(days=spec.window_days - 1)
    ext = f".{spec.format}"
    root = f"gs://{bucket}/{spec.prefix}/"
    window_text = (
        f"{start.isoformat()}..{as_of.isoformat()} "
        f"(window_days={spec.window_days}, as of {as_of.isoformat()})"
    )

    by_day = _list_partitions(client, bucket, spec.prefix)
    in_window = {d: objs for d, objs in by_day.items() if start <= d <= as_of}
    if not in_window:
        latest = f"dt={max(by_day).isoformat()}" if by_day else "none"
        raise DataError(
            f"{root}: no dt= partitions in the window {window_text}; "
            f"latest partition found: {latest}"
        )

    days = sorted(in_window)
    data = {d: [o for o in in_window[d] if _is_data_file(o.leaf, ext)] for d in days}
    chosen = [(d, o) for d in days for o in data[d]]
    if not chosen:
        others = sorted({o.leaf for d in days for o in in_window[d]})
        raise DataError(
            f"{root}: {len(days)} partition(s) in the window {window_text} but no "
            f"{ext} files in them (found: {', '.join(others[:5])}); "
            f"is data.format '{spec.format}' right?"
        )

    frames: list[pd.DataFrame] = []
    for _, obj in chosen:
        uri = f"gs://{bucket}/{obj.name}"
        part = _read_object(client, bucket, obj, spec.format, uri, wanted)
        if part is not None:
            frames.append(_coerce(part, uri, columns, target))

    files = [f"gs://{bucket}/{o.name}#{o.generation}" for _, o in chosen]
    rows = sum(len(f) for f in frames)
    if rows == 0:
        raise DataError(
            f"{root}: {len(files)} {ext} file(s) in the window {window_text} but zero rows in them"
        )
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame.reset_index(drop=True)

    empty = [c for c in columns if frame[c].isna().all()]
    if empty:  # a feature with no values at all cannot be imputed or scaled
        raise DataError(
            f"{root}: column(s) {empty} have no values at all in the window "
            f"{window_text} ({rows} rows)"
        )
    if rows < spec.min_rows:
        raise DataError(
            f"{root}: only {rows} rows in the window {window_text}; "
            f"need at least {spec.min_rows} (data.min_rows)"
        )

    window = DataWindow(
        start=start,
        end=as_of,
        partitions=[f"dt={d.isoformat()}" for d in days if data[d]],
        files=files,
        rows=rows,
        missing={c: round(float(frame[c].isna().mean()), 6) for c in wanted},
    )
    log.info("read %d rows from %d file(s) under %s (%s)", rows, len(files), root, window_text)
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
    client: storage.Client, bucket: str, obj: _Object, fmt: str, uri: str, wanted: list[str]
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
    return _parse(payload, fmt, uri, wanted)


def _parse(payload: bytes, fmt: str, uri: str, wanted: list[str]) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            pfile = pq.ParquetFile(io.BytesIO(payload))
            names = list(pfile.schema_arrow.names)
            if set(wanted) <= set(names):  # read only what is needed; parquet is columnar
                return pfile.read(columns=wanted).to_pandas()
        else:
            # low_memory=False: infer each column's dtype from the whole file, not per chunk.
            frame = pd.read_csv(io.BytesIO(payload), low_memory=False)
            names = [str(c) for c in frame.columns]
            if set(wanted) <= set(names):
                return frame[wanted]
    except (ValueError, OSError, pa.ArrowException) as exc:  # ParserError, ArrowInvalid, decode
        raise DataError(f"{uri}: cannot parse as {fmt}: {_first_line(exc)}") from None
    missing = [c for c in wanted if c not in names]
    raise DataError(f"{uri}: missing column(s) {missing}; available: {names}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _coerce(frame: pd.DataFrame, uri: str, columns: list[str], target: str | None) -> pd.DataFrame:
    import numpy as np
    import pandas as pd
    from pandas.api import types as pdt

    out = {}
    for col in frame.columns:
        series = frame[col]
        if col == target:
            nulls = int(series.isna().sum())
            if nulls:
                raise DataError(
                    f"{uri}: target column {target!r} has {nulls} missing value(s); "
                    "every training row needs a label"
                )
            out[col] = series
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
