"""``warden local upload``: data files into a model's partitions, as its config expects them.

The layout is the one :mod:`warden.store.data` reads (and :func:`warden_local.examples.
write_partitions` writes): ``gs://BUCKET/PREFIX/dt=YYYY-MM-DD/NAME.FORMAT``, where BUCKET is the
model's ``data.bucket`` (default: the data bucket setting), PREFIX its ``data.prefix`` and FORMAT
its ``data.format``.

* **A file** goes to one day's partition (``day``; the caller's default is today).
* **A folder** is mirrored: each data file's day comes from its path, the innermost folder named
  ``dt=YYYY-MM-DD`` or ``YYYY-MM-DD``, else a ``YYYY-MM-DD`` in the file's own name. Files under a
  day's folder land directly in its partition (the reader reads no subfolders). Names starting
  with ``.`` or ``_`` (``_SUCCESS``, ``.crc``) are left out, as the reader leaves them out; other
  files that are neither CSV nor Parquet are reported as skipped.

Before anything is written every file is checked: it must be CSV (``.csv``) or Parquet
(``.parquet``), readable, under the reader's size limit, and hold every feature and the target
(unless ``unlabeled``: monitoring reads data without labels, training does not). Problems are
collected over all files and raised together as one :class:`~warden.errors.DataError`; nothing is
uploaded then. A file in the other format is converted (pandas) to the model's format.

pandas and pyarrow are imported inside functions only.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warden.errors import DataError
from warden.store.data import MAX_OBJECT_BYTES, name_list

if TYPE_CHECKING:
    from google.cloud import storage

    from warden.config.models import ModelConfig

__all__ = ["FORMATS", "Plan", "Upload", "day_of", "describe", "plan_upload", "upload"]

#: File suffix → format, the two the reader knows.
FORMATS = {".csv": "csv", ".parquet": "parquet"}
CONTENT_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: Problems listed in one error (the rest are counted).
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Upload:
    """One file and the object it becomes."""

    source: Path
    day: date
    object_name: str
    source_format: str
    target_format: str

    @property
    def converted(self) -> bool:
        return self.source_format != self.target_format


@dataclass
class Plan:
    """What :func:`upload` writes: the files in order, and the files left out."""

    bucket: str
    prefix: str
    uploads: list[Upload] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    @property
    def days(self) -> list[date]:
        return sorted({u.day for u in self.uploads})


def _as_day(text: str) -> date | None:
    if not _DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def day_of(relative: Path) -> date | None:
    """The day of a file from its path below the uploaded folder (see the module docstring)."""
    for part in reversed(relative.parts[:-1]):
        day = _as_day(part.removeprefix("dt="))
        if day is not None:
            return day
    found = {d for m in _DAY.findall(relative.stem) if (d := _as_day(m)) is not None}
    return found.pop() if len(found) == 1 else None


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def plan_upload(
    path: Path, model: ModelConfig, *, bucket: str, day: date | None, unlabeled: bool = False
) -> Plan:
    """Where each file of ``path`` goes, after checking every one of them (DataError if any
    fails: every problem in one message). ``day``: the partition of a single file; a folder's
    files take their days from their paths, so ``day`` must be None for a folder."""
    spec = model.data
    plan = Plan(bucket=bucket, prefix=spec.prefix)
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    problems: list[str] = []
    if path.is_dir():
        if day is not None:
            raise ValueError(
                "a folder's files take their days from their paths (dt=YYYY-MM-DD/ folders or "
                "YYYY-MM-DD in the file name); --date is for a single file"
            )
        undated: list[str] = []
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            relative = file.relative_to(path)
            if _hidden(relative):
                continue
            if file.suffix.lower() not in FORMATS:
                plan.skipped.append(file)
                continue
            file_day = day_of(relative)
            if file_day is None:
                undated.append(str(relative))
                continue
            plan.uploads.append(_upload(file, file_day, spec.prefix, spec.format))
        if undated:
            problems.append(
                f"no day in the path of {name_list(undated)}: put each file in a dt=YYYY-MM-DD/ "
                "folder or name it with its YYYY-MM-DD"
            )
        if not plan.uploads and not undated:
            raise DataError(f"{path}: no .csv or .parquet files in this folder")
    else:
        if path.suffix.lower() not in FORMATS:
            raise DataError(f"{path}: not a CSV (.csv) or Parquet (.parquet) file")
        if day is None:
            raise ValueError("a single file needs the day of its partition")
        plan.uploads.append(_upload(path, day, spec.prefix, spec.format))

    plan.uploads.sort(key=lambda u: (u.day, u.object_name, str(u.source)))
    taken: dict[str, Path] = {}
    for item in plan.uploads:
        other = taken.setdefault(item.object_name, item.source)
        if other != item.source:
            problems.append(f"{other} and {item.source} would both be {item.object_name}")
    required = [*model.features, *([model.target] if model.target and not unlabeled else [])]
    for item in plan.uploads:
        problem = _check(item.source, item.source_format, required, model, unlabeled)
        if problem:
            problems.append(problem)
    if len(problems) == 1:
        raise DataError(f"nothing uploaded for {model.name}: {problems[0]}")
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS])
        more = len(problems) - MAX_PROBLEMS
        listed += f"\n  … and {more} more" if more > 0 else ""
        raise DataError(f"nothing uploaded for {model.name}, {len(problems)} problems:\n{listed}")
    return plan


def _upload(file: Path, day: date, prefix: str, target_format: str) -> Upload:
    name = f"{prefix}/dt={day.isoformat()}/{file.stem}.{target_format}"
    return Upload(file, day, name, FORMATS[file.suffix.lower()], target_format)


def _check(
    file: Path, fmt: str, required: list[str], model: ModelConfig, unlabeled: bool
) -> str | None:
    """What is wrong with one file for ``model``, or None."""
    size = file.stat().st_size
    if size > MAX_OBJECT_BYTES:
        return (
            f"{file}: {size:,} bytes, over the reader's {MAX_OBJECT_BYTES:,}-byte limit for one "
            "data file; split it into several files"
        )
    try:
        columns = _columns(file, fmt)
    except Exception as exc:  # the parsers' errors vary (ArrowInvalid, csv.Error, Unicode...)
        text = str(exc).strip().splitlines()
        return f"{file}: cannot read as {fmt}: {text[0][:300] if text else type(exc).__name__}"
    have = set(columns)
    missing = [c for c in required if c not in have]
    if not missing:
        return None
    what = "features/target" if model.target and not unlabeled else "features"
    hint = ""
    if model.target in missing and len(missing) == 1:
        hint = " (data without labels can be monitored for drift, not trained on: --unlabeled)"
    return (
        f"{file}: missing column(s) {name_list(missing)} of {model.name}'s {what}; "
        f"the file has {name_list(columns)}{hint}"
    )


def _columns(file: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(file).names)
    with file.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.reader(handle):
            if row:
                return row
    raise ValueError("no header row")


def _payload(item: Upload) -> bytes:
    if not item.converted:
        return item.source.read_bytes()
    import pandas as pd

    if item.source_format == "csv":
        frame = pd.read_csv(item.source, low_memory=False)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    return pd.read_parquet(item.source).to_csv(index=False).encode()


def upload(client: storage.Client, plan: Plan) -> list[dict[str, Any]]:
    """Write every planned file (converted when needed); one row per object written."""
    from google.api_core.exceptions import NotFound

    bucket = client.bucket(plan.bucket)
    rows = []
    for item in plan.uploads:
        blob = bucket.blob(item.object_name)
        try:
            blob.upload_from_string(_payload(item), content_type=CONTENT_TYPES[item.target_format])
        except NotFound:
            raise DataError(f"gs://{plan.bucket}: bucket not found") from None
        rows.append(
            {
                "object": f"gs://{plan.bucket}/{item.object_name}",
                "generation": blob.generation,
                "source": str(item.source),
                "converted_from": item.source_format if item.converted else None,
            }
        )
    return rows


def describe(plan: Plan) -> str:
    """``N file(s) in dt=FIRST..dt=LAST of gs://BUCKET/PREFIX/`` for the summary line."""
    days = plan.days
    span = (
        f"dt={days[0].isoformat()}"
        if len(days) == 1
        else (f"{len(days)} partitions dt={days[0].isoformat()}..dt={days[-1].isoformat()}")
    )
    return f"{len(plan.uploads)} file(s) into {span} of gs://{plan.bucket}/{plan.prefix}/"
