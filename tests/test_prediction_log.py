"""warden.serving.PredictionLog on the storage emulator: Parquet partitions the data reader
reads, flushes on size, age and close, a memory bound under a burst, labels by request id."""

from __future__ import annotations

import io
import threading
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer

from stack_process import wait_for
from warden.config.models import DataSpec
from warden.serving import PredictionLog
from warden.store.data import read_training_frame

MODEL = "risk"
DATA = load_breast_cancer(as_frame=True).frame
FEATURES = ["mean radius", "mean texture", "mean area"]
DAY = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def _row(i: int) -> dict[str, float]:
    return {f: float(DATA[f].iloc[i]) for f in FEATURES}


def _parquet(storage_client, bucket: str, prefix: str) -> pd.DataFrame:
    blobs = sorted(storage_client.list_blobs(bucket, prefix=prefix), key=lambda b: b.name)
    frames = [pq.read_table(io.BytesIO(b.download_as_bytes())).to_pandas() for b in blobs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@pytest.fixture
def bucket(storage_client, bucket_names):
    return storage_client.bucket(bucket_names["data"])


def test_logged_rows_are_partitions_the_data_reader_reads(
    storage_client, bucket, bucket_names
) -> None:
    plog = PredictionLog(MODEL, bucket, flush_at_exit=False)
    ids = [
        plog.log(_row(i), {"score": 0.5 + i / 1000}, version=3, at=DAY + timedelta(seconds=i))
        for i in range(120)
    ]
    assert all(ids)
    assert len(set(ids)) == 120
    assert plog.flush() == 120
    names = [b.name for b in storage_client.list_blobs(bucket_names["data"])]
    assert len(names) == 1
    assert names[0].startswith(f"predictions/{MODEL}/dt=2026-12-01/part-093000-")
    assert names[0].endswith(".parquet")
    spec = DataSpec(prefix=f"predictions/{MODEL}", format="parquet", window_days=1, min_rows=10)
    frame, _ = read_training_frame(
        storage_client,
        bucket=bucket_names["data"],
        spec=spec,
        columns=FEATURES,
        as_of=date(2026, 12, 1),
    )
    pd.testing.assert_frame_equal(
        frame[FEATURES], DATA[FEATURES].iloc[:120].reset_index(drop=True), check_dtype=False
    )
    raw = _parquet(storage_client, bucket_names["data"], f"predictions/{MODEL}/")
    assert list(raw["request_id"]) == ids
    assert set(raw["model_version"]) == {3}
    assert raw["logged_at"].iloc[0] == pd.Timestamp(DAY)
    assert raw["score"].iloc[10] == pytest.approx(0.51)
    assert plog.stats()["written"] == 120
    assert plog.stats()["files"] == 1


def test_rows_split_by_their_day_and_close_writes_the_rest(
    storage_client, bucket, bucket_names
) -> None:
    plog = PredictionLog(MODEL, bucket, flush_at_exit=False)
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    for i in range(6):
        plog.log(_row(i), {"cluster": i % 3}, version=1, at=midnight + timedelta(hours=i - 3))
    plog.close()
    days = sorted(b.name.split("/")[2] for b in storage_client.list_blobs(bucket_names["data"]))
    assert days == ["dt=2026-12-01", "dt=2026-12-02"]
    assert plog.stats()["written"] == 6
    assert plog.stats()["waiting"] == 0


def test_the_background_writer_flushes_on_size_and_on_age(bucket) -> None:
    clock = Clock()
    plog = PredictionLog(
        MODEL, bucket, flush_rows=10, flush_seconds=60, clock=clock, flush_at_exit=False
    )
    try:
        for i in range(10):  # the tenth row makes ten waiting: written at once
            plog.log(_row(i), {"score": 0.1}, version=1, at=DAY)
        wait_for(lambda: plog.stats()["written"] == 10, 30, "the size-triggered write")
        assert plog.stats()["files"] == 1
        # One row waits; once it is flush_seconds old, the next row finds it due.
        plog.log(_row(10), {"score": 0.2}, version=1, at=DAY)
        clock.t += 60
        plog.log(_row(11), {"score": 0.2}, version=1, at=DAY)
        wait_for(lambda: plog.stats()["written"] == 12, 30, "the age-triggered write")
        assert plog.stats()["files"] == 2
    finally:
        plog.close()


def test_a_burst_stays_within_the_bound_and_counts_what_it_drops(storage_client) -> None:
    """The bucket does not exist (say, a typo in the deployment): every write fails, rows are
    kept up to the bound, the rest dropped and counted; the request path never sees an error."""
    missing = storage_client.bucket("no-such-bucket-for-predictions")
    plog = PredictionLog(MODEL, missing, flush_rows=50, max_rows=200, flush_at_exit=False)
    results: list[str | None] = []
    lock = threading.Lock()
    peak = [0]

    def burst() -> None:
        for i in range(500):
            got = plog.log(_row(i % 100), {"score": 0.3}, version=1)
            with lock:
                results.append(got)
                peak[0] = max(peak[0], plog.stats()["waiting"])

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    plog.close()  # its final write fails too: those rows go back, within the bound
    stats = plog.stats()
    assert len(results) == 2000
    assert peak[0] <= 200
    assert stats["written"] == 0
    assert 0 < stats["waiting"] <= 200
    # Every row is accounted for: written, still waiting, or dropped (at log time or after a
    # failed write); the ones refused at log time are the Nones the caller got.
    assert stats["written"] + stats["waiting"] + stats["dropped"] == 2000
    assert stats["logged"] == 2000 - results.count(None)
    assert "404" in stats["last_error"]["message"]


def test_labels_arrive_later_and_join_by_request_id(storage_client, bucket, bucket_names) -> None:
    plog = PredictionLog(MODEL, bucket, flush_at_exit=False)
    ids = [plog.log(_row(i), {"score": i / 10}, version=2, at=DAY) for i in range(10)]
    plog.flush()
    for i, rid in enumerate(ids[:6]):  # four never get a label
        assert plog.label(rid, int(DATA["target"].iloc[i]), at=DAY + timedelta(days=3))
    plog.flush()
    predictions = _parquet(storage_client, bucket_names["data"], f"predictions/{MODEL}/")
    labels = _parquet(storage_client, bucket_names["data"], f"labels/{MODEL}/")
    assert list(labels.columns) == ["request_id", "label", "labeled_at"]
    joined = predictions.merge(labels, on="request_id", how="inner")
    assert len(joined) == 6
    assert list(joined["label"]) == list(DATA["target"].iloc[:6])
    names = [b.name for b in storage_client.list_blobs(bucket_names["data"], prefix="labels/")]
    assert names[0].startswith(f"labels/{MODEL}/dt=2026-12-04/")


def test_a_row_with_a_reserved_or_repeated_name_is_rejected_not_raised(bucket) -> None:
    plog = PredictionLog(MODEL, bucket, flush_at_exit=False)
    assert plog.log({"request_id": 1.0}, {"score": 0.1}, version=1) is None
    assert plog.log({"score": 1.0}, {"score": 0.1}, version=1) is None
    assert plog.log(_row(0), {"score": 0.1}, version=1, request_id="r-1") == "r-1"
    stats = plog.stats()
    assert (stats["rejected"], stats["logged"]) == (2, 1)
    assert "clash" in stats["last_error"]["message"]


def test_a_value_of_another_type_costs_its_row_not_the_batch(
    storage_client, bucket, bucket_names
) -> None:
    """A string among a feature's numbers cannot go into one Parquet column with them: that
    row is rejected at write time and counted; the others are written and logging goes on."""
    plog = PredictionLog(MODEL, bucket, flush_at_exit=False)
    for i in range(10):
        row = _row(i)
        if i == 4:
            row["mean radius"] = "n/a"  # type: ignore[assignment]
        plog.log(row, {"score": 0.5}, version=1, request_id=f"r{i}", at=DAY)
    assert plog.flush() == 9
    stats = plog.stats()
    assert (stats["written"], stats["rejected"], stats["waiting"]) == (9, 1, 0)
    assert "another type" in stats["last_error"]["message"]
    plog.log(_row(11), {"score": 0.4}, version=1, request_id="r11", at=DAY)
    assert plog.flush() == 1
    table = _parquet(storage_client, bucket_names["data"], f"predictions/{MODEL}/")
    assert sorted(table["request_id"]) == sorted([f"r{i}" for i in range(10) if i != 4] + ["r11"])


def test_on_the_local_stack_rows_are_stamped_on_its_virtual_clock(
    gcs_emulator, storage_client, bucket_names
) -> None:
    """The monitor's window is on the local stack's clock (WARDEN_LOCAL_CLOCK): the log's
    ``logged_at`` must be too, or a fast clock's monitor would read the wrong days."""
    import time

    start = datetime(2030, 1, 15, 12, tzinfo=UTC).timestamp()
    environ = {
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_PROJECT": "warden-test",
        "WARDEN_DATA_BUCKET": bucket_names["data"],
        "WARDEN_LOCAL_CLOCK": f"{start},{time.time()},1.0",
    }
    plog = PredictionLog.from_env(MODEL, environ=environ, flush_at_exit=False)
    plog.log(_row(0), {"score": 0.5}, version=1)
    plog.flush()
    (name,) = [b.name for b in storage_client.list_blobs(bucket_names["data"])]
    assert name.startswith(f"predictions/{MODEL}/dt=2030-01-15/")


def test_a_row_logged_while_a_flush_takes_the_list_is_not_lost(storage_client, bucket) -> None:
    """The interleaving a burst under load once hit: a caller had picked the list of waiting
    rows, a flush swapped it for a new one, then the caller appended to the old list, which the
    flush had already written out: the row was neither written nor waiting."""
    plog = PredictionLog(MODEL, bucket, flush_at_exit=False)
    taken: list[list] = []

    class FlushFirst:
        """The log's lock, but the first time a caller takes it a flush swaps the lists first."""

        def __init__(self, inner: threading.Lock) -> None:
            self.inner, self.armed = inner, True

        def __enter__(self) -> FlushFirst:
            if self.armed:
                self.armed = False
                with self.inner:
                    taken.append(plog._rows)
                    plog._rows = []
            self.inner.acquire()
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.release()

    plog._lock = FlushFirst(plog._lock)
    assert plog.log(_row(1), {"score": 0.5}, version=1) is not None
    assert taken == [[]]  # the flush took the (empty) list before the row was added
    assert plog.stats()["waiting"] == 1  # the row waits in the new list
    assert plog.flush() == 1
