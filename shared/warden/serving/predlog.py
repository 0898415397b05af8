"""What the model saw in production, written where the monitor reads data.

::

    predictions = PredictionLog.from_env("breast-cancer-risk")
    ...
    request_id = predictions.log(features_of_the_row, {"score": score}, version=loaded.version)
    ...
    predictions.label(request_id, 1)      # when the outcome is known, maybe days later

Each logged prediction is one row: the model's features, its outputs (score, class, cluster:
whatever names the caller gives), ``model_version``, ``request_id`` and ``logged_at`` (UTC).
Rows are batched in memory and written as Parquet files, create-only, to
``gs://DATA_BUCKET/predictions/MODEL/dt=YYYY-MM-DD/part-*.parquet`` (the day of ``logged_at``):
the same partition layout as training data, so :mod:`warden.store.data` reads it as it reads a
training feed. Labels go to ``labels/MODEL/dt=.../`` as (``request_id``, ``label``,
``labeled_at``) and are joined by request id.

The request path is never blocked and never fails: :meth:`PredictionLog.log` appends to a list
under a lock and returns. A background thread writes when ``flush_rows`` rows are waiting, when
the oldest has waited ``flush_seconds``, and at :meth:`PredictionLog.close` (registered at
exit). Memory is bounded: past ``max_rows`` waiting rows a new row is dropped and counted
(:meth:`PredictionLog.stats`), as is a row whose names collide with the log's own columns. A
write that fails puts its rows back while the bound allows (they are retried with the next
flush), else they are dropped and counted; the error is kept for the health endpoint.
"""

from __future__ import annotations

import atexit
import io
import logging
import numbers
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

#: Columns the log adds to every prediction row (a feature or output may not use these names).
REQUEST_ID, LOGGED_AT, MODEL_VERSION = "request_id", "logged_at", "model_version"
#: Columns of a label row.
LABEL, LABELED_AT = "label", "labeled_at"
RESERVED = frozenset({REQUEST_ID, LOGGED_AT, MODEL_VERSION})
PARQUET_TYPE = "application/vnd.apache.parquet"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _kind(value: Any) -> str:
    """A value's column kind for Parquet: bool, number, string or other."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Number):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


class PredictionLog:
    """Batches prediction rows (and later labels) and writes them as Parquet partitions.

    ``bucket``: a ``google.cloud.storage.Bucket`` (see :meth:`from_env`). ``prefix`` and
    ``labels_prefix`` default to ``predictions/MODEL`` and ``labels/MODEL``.

    ``flush_rows``, ``flush_seconds``: write when that many rows wait, or the oldest has waited
    that long. Each write is a file, and the monitor reads at most 10,000 files per window
    (``warden.store.data.MAX_WINDOW_FILES``): at the default 300 s an instance with steady
    traffic writes 288 files a day, about 2,000 in a 7-day window; keep instances x window days
    x 86,400 / flush_seconds under 10,000.

    ``max_rows``: most rows (predictions and labels) held in memory. ``clock`` (monotonic
    seconds) and ``now`` (UTC datetimes) are injectable for tests.
    """

    def __init__(
        self,
        model: str,
        bucket: storage.Bucket,
        *,
        prefix: str | None = None,
        labels_prefix: str | None = None,
        flush_rows: int = 5_000,
        flush_seconds: float = 300.0,
        max_rows: int = 50_000,
        flush_at_exit: bool = True,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not 1 <= flush_rows <= max_rows:
            raise ValueError(f"need 1 <= flush_rows <= max_rows, got {flush_rows}, {max_rows}")
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be positive, got {flush_seconds!r}")
        self.model = model
        self.bucket = bucket
        self.prefix = (prefix or f"predictions/{model}").strip("/")
        self.labels_prefix = (labels_prefix or f"labels/{model}").strip("/")
        self.flush_rows = flush_rows
        self.flush_seconds = float(flush_seconds)
        self.max_rows = max_rows
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer at a time (thread or flush())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rows: list[dict[str, Any]] = []
        self._labels: list[dict[str, Any]] = []
        self._oldest: float | None = None
        self._counts = {
            "logged": 0,
            "labels": 0,
            "written": 0,
            "labels_written": 0,
            "files": 0,
            "dropped": 0,
            "rejected": 0,
        }
        self._last_error: dict[str, Any] | None = None
        if flush_at_exit:
            atexit.register(self.close)

    @classmethod
    def from_env(
        cls, model: str, *, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> PredictionLog:
        """A log in the data bucket the environment names (``WARDEN_DATA_BUCKET``)."""
        from warden.clients import Clients
        from warden.settings import Settings

        settings = Settings.from_env(environ)
        bucket = Clients(settings).storage.bucket(settings.data_bucket)
        kwargs.setdefault("now", settings.now)  # the local stack's virtual clock, if it has one
        return cls(model, bucket, **kwargs)

    # -- the request path --------------------------------------------------------------------------
    def log(
        self,
        features: Mapping[str, Any],
        outputs: Mapping[str, Any],
        *,
        version: int,
        request_id: str | None = None,
        at: datetime | None = None,
    ) -> str | None:
        """Record one prediction; its request id (generated when not given), or None when the
        row was dropped (memory bound reached) or rejected (a name the log reserves, or an
        output named like a feature). Never raises for the caller's data."""
        clash = RESERVED.intersection(features) | RESERVED.intersection(outputs)
        clash |= set(features).intersection(outputs)
        if clash:
            self._count("rejected", f"names {sorted(clash)} clash (reserved or repeated)")
            return None
        rid = request_id if request_id is not None else uuid.uuid4().hex
        row = {**features, **outputs, REQUEST_ID: str(rid), MODEL_VERSION: int(version)}
        row[LOGGED_AT] = at if at is not None else self._now()
        if not self._put(False, row, "logged"):
            return None
        return row[REQUEST_ID]  # type: ignore[no-any-return]

    def label(self, request_id: str, label: Any, *, at: datetime | None = None) -> bool:
        """Record the outcome of the prediction ``request_id``; False if dropped."""
        row = {REQUEST_ID: str(request_id), LABEL: label, LABELED_AT: at or self._now()}
        return self._put(True, row, "labels")

    def _put(self, labels: bool, row: dict[str, Any], counter: str) -> bool:
        with self._lock:
            if len(self._rows) + len(self._labels) >= self.max_rows:
                self._counts["dropped"] += 1
                return False
            # The list is looked up under the lock: a flush swaps it for a new one, and a row
            # appended to the list a flush had already taken was lost (seen as one row missing
            # from the accounting of a 2,000-row burst under load).
            (self._labels if labels else self._rows).append(row)
            self._counts[counter] += 1
            now = self._clock()
            if self._oldest is None:
                self._oldest = now
            due = (
                len(self._rows) + len(self._labels) >= self.flush_rows
                or now - self._oldest >= self.flush_seconds
            )
        if self._thread is None:
            self._start()
        if due:
            self._wake.set()
        return True

    # -- writing -----------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"warden-predlog-{self.model}", daemon=True
            )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                oldest = self._oldest
                waiting = len(self._rows) + len(self._labels)
            if waiting and (
                waiting >= self.flush_rows
                or (oldest is not None and self._clock() - oldest >= self.flush_seconds)
            ):
                self.flush()

    def flush(self) -> int:
        """Write every waiting row now, in this thread; the number of rows written."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
                labels, self._labels = self._labels, []
                self._oldest = None
            written = self._write(rows, self.prefix, LOGGED_AT, "written")
            self._write(labels, self.labels_prefix, LABELED_AT, "labels_written")
            return written

    def _write(self, rows: list[dict[str, Any]], prefix: str, at: str, counter: str) -> int:
        if not rows:
            return 0
        by_day: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            stamp: datetime = row[at]
            day = (stamp.astimezone(UTC) if stamp.tzinfo else stamp).date().isoformat()
            by_day.setdefault(day, []).append(row)
        written = 0
        for day, part in by_day.items():
            # Rows that cannot be written are counted out here, never retried.
            table, good = self._table(part, at)
            if not good:
                continue
            try:
                name = self._upload(prefix, day, table, good[0][at])
            except Exception as exc:  # storage: the rows go back, within the bound
                self._requeue(good, prefix == self.prefix, f"{prefix}/dt={day}: {exc}")
                continue
            written += table.num_rows
            with self._lock:
                self._counts[counter] += table.num_rows
                self._counts["files"] += 1
            log.debug("wrote %d rows to %s", table.num_rows, name)
        return written

    def _upload(self, prefix: str, day: str, table: Any, first: datetime) -> str:
        import pyarrow.parquet as pq

        from warden.store import gcs
        from warden.store.data import ROWS_METADATA

        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        name = f"{prefix}/dt={day}/part-{first:%H%M%S}-{uuid.uuid4().hex[:16]}.parquet"
        # A unique name, create-only: a retried upload that landed is recognised as ours.
        # Its row count in the metadata: the job runner's ``auto`` choice reads it from a listing.
        gcs.create(
            self.bucket,
            name,
            buffer.getvalue(),
            content_type=PARQUET_TYPE,
            metadata={ROWS_METADATA: str(table.num_rows)},
        )
        return name

    def _table(self, rows: list[dict[str, Any]], at: str) -> tuple[Any, list[dict[str, Any]]]:
        """The rows as an Arrow table, and the rows in it. A row whose value does not fit its
        column's type (a string among a feature's numbers, say) is rejected and counted, not
        retried: kept, it would fail every later write of its batch and, once the bound filled,
        every row after it would be dropped."""
        import pyarrow as pa

        def build(part: list[dict[str, Any]]) -> Any:
            # Every column any row has, in first-seen order (one pass: rows x columns).
            names = list(dict.fromkeys(key for row in part for key in row))
            return pa.table(
                {
                    name: pa.array([row.get(name) for row in part], type=pa.timestamp("us", "UTC"))
                    if name == at
                    else pa.array([row.get(name) for row in part])
                    for name in names
                }
            )

        try:
            return build(rows), rows
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
        kinds: dict[str, str] = {}
        for row in rows:  # each column's kind: that of its first value
            for name, value in row.items():
                if value is not None:
                    kinds.setdefault(name, _kind(value))
        good = [
            row
            for row in rows
            if all(v is None or _kind(v) == kinds[k] for k, v in row.items() if k != at)
        ]
        rejected = len(rows) - len(good)
        with self._lock:
            self._counts["rejected"] += rejected
            self._last_error = {
                "at": self._now().isoformat(),
                "message": f"{rejected} row(s) not written: a value of another type than its "
                f"column's ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items())[:8])})",
            }
        return build(good), good

    def _requeue(self, rows: list[dict[str, Any]], predictions: bool, error: str) -> None:
        with self._lock:
            room = self.max_rows - len(self._rows) - len(self._labels)
            kept = rows[: max(room, 0)]
            (self._rows if predictions else self._labels)[:0] = kept
            if kept and self._oldest is None:
                self._oldest = self._clock()
            self._counts["dropped"] += len(rows) - len(kept)
            self._last_error = {"at": self._now().isoformat(), "message": error}
        log.warning("prediction log write failed (%d rows kept): %s", len(kept), error)

    def _count(self, counter: str, error: str) -> None:
        with self._lock:
            self._counts[counter] += 1
            self._last_error = {"at": self._now().isoformat(), "message": error}

    def close(self) -> None:
        """Stop the background writer and write what waits (called at exit too)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        try:
            self.flush()
        except Exception:  # at exit, a failure is logged, never raised
            log.exception("prediction log: final flush failed")

    def stats(self) -> dict[str, Any]:
        """Counters for a health endpoint: rows logged, written, waiting, dropped, rejected."""
        with self._lock:
            return {
                **self._counts,
                "waiting": len(self._rows) + len(self._labels),
                "last_error": dict(self._last_error) if self._last_error else None,
            }
