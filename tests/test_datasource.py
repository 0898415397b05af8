"""warden.store.data against a real fake-gcs-server; the example data in warden_local.examples."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from warden.config import DataSpec, load_config
from warden.errors import DataError, RetryableError
from warden.store import data as datasource
from warden.store.data import DataWindow, files_digest, read_training_frame
from warden_local.examples import (
    CUSTOMER_FEATURES,
    breast_cancer_frame,
    customer_frame,
    write_partitions,
)

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 3, 10)
COLS = ["a", "b"]


def _upload(client, bucket: str, name: str, data: bytes | str) -> int:
    blob = client.bucket(bucket).blob(name)
    blob.upload_from_string(data)
    return int(blob.generation)


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _spec(fmt: str = "csv", *, window_days: int = 3, min_rows: int = 10) -> DataSpec:
    return DataSpec(prefix="p", format=fmt, window_days=window_days, min_rows=min_rows)


def _read(client, bucket: str, spec: DataSpec, **kwargs):
    kwargs.setdefault("columns", COLS)
    return read_training_frame(client, bucket=bucket, spec=spec, as_of=AS_OF, **kwargs)


def _ab(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(start, start + n), "b": np.arange(n) * 0.5, "z": "x"})


# --- round trips --------------------------------------------------------------------------------


def test_parquet_round_trip_reads_only_the_window(storage_client, bucket_names):
    bucket = bucket_names["data"]
    spec = DataSpec(prefix="customers", format="parquet", window_days=7, min_rows=50)
    inside = customer_frame(700, seed=1)
    write_partitions(
        storage_client, bucket=bucket, prefix="customers", frame=inside, fmt="parquet",
        end=AS_OF, days=7,
    )  # fmt: skip
    # Rows just outside the window on both sides, marked by an impossible recency.
    marker = customer_frame(40, seed=2).assign(recency_days=-1)
    for day in (AS_OF - timedelta(days=7), AS_OF + timedelta(days=1)):
        _upload(storage_client, bucket, f"customers/dt={day}/part-00000.parquet", _parquet(marker))

    frame, window = read_training_frame(
        storage_client, bucket=bucket, spec=spec, columns=CUSTOMER_FEATURES, as_of=AS_OF
    )

    assert list(frame.columns) == CUSTOMER_FEATURES
    assert all(str(t) == "float64" for t in frame.dtypes)
    assert len(frame) == window.rows == 700
    assert (frame["recency_days"] >= 0).all()
    pd.testing.assert_frame_equal(frame, inside[CUSTOMER_FEATURES].astype("float64"))
    assert (window.start, window.end) == (AS_OF - timedelta(days=6), AS_OF)
    assert window.partition_count == 7
    assert (window.first_partition, window.last_partition) == (
        f"dt={AS_OF - timedelta(days=6)}",
        f"dt={AS_OF}",
    )
    assert window.missing == dict.fromkeys(CUSTOMER_FEATURES, 0.0)


def test_csv_round_trip_keeps_target_dtype_and_column_order(storage_client, bucket_names):
    bucket = bucket_names["data"]
    model = load_config(ROOT / "warden.yaml").model("breast-cancer-risk")
    data = breast_cancer_frame()
    write_partitions(
        storage_client, bucket=bucket, prefix=model.data.prefix, frame=data, fmt="csv",
        end=AS_OF, days=5,
    )  # fmt: skip
    columns = list(reversed(model.features))

    frame, window = read_training_frame(
        storage_client, bucket=bucket, spec=model.data, columns=columns, as_of=AS_OF,
        target=model.target,
    )  # fmt: skip

    assert list(frame.columns) == [*columns, "malignant"]
    assert frame["malignant"].dtype == np.int64
    assert int(frame["malignant"].sum()) == 212
    assert all(frame[c].dtype == np.float64 for c in columns)
    np.testing.assert_allclose(frame[columns].to_numpy(), data[columns].to_numpy(), rtol=1e-12)
    assert window.rows == 569
    assert window.file_count == 5
    assert window.missing["malignant"] == 0.0


def test_files_pin_the_generation_read(storage_client, bucket_names):
    bucket = bucket_names["data"]
    name = f"p/dt={AS_OF}/part-0.csv"
    first = _upload(storage_client, bucket, name, _ab(12).to_csv(index=False))

    frame1, window1 = _read(storage_client, bucket, _spec())
    assert window1.files_sha256 == files_digest([f"gs://{bucket}/{name}#{first}"])

    second = _upload(storage_client, bucket, name, _ab(15, start=100).to_csv(index=False))
    frame2, window2 = _read(storage_client, bucket, _spec())
    assert second != first
    assert window2.files_sha256 == files_digest([f"gs://{bucket}/{name}#{second}"])
    assert window2.files_sha256 != window1.files_sha256
    assert frame1["a"].min() == 0
    assert frame2["a"].min() == 100
    assert len(frame2) == 15


def test_many_files_per_partition_markers_and_junk_ignored(storage_client, bucket_names):
    bucket = bucket_names["data"]
    day = f"p/dt={AS_OF}"
    gens = [
        _upload(storage_client, bucket, f"{day}/part-00001.parquet", _parquet(_ab(6, start=10))),
        _upload(storage_client, bucket, f"{day}/part-00000.parquet", _parquet(_ab(5))),
    ]
    earlier = f"p/dt={AS_OF - timedelta(days=1)}"
    gens.append(_upload(storage_client, bucket, f"{earlier}/x.parquet", _parquet(_ab(4, start=20))))
    _upload(storage_client, bucket, f"{day}/_SUCCESS", b"")
    _upload(storage_client, bucket, f"{day}/.part-00000.parquet.crc", b"junk")
    _upload(storage_client, bucket, f"{day}/_temporary/0/part-9.parquet", b"not parquet")
    _upload(storage_client, bucket, f"{day}/extra.csv", "a,b\n999,999\n")  # wrong format
    # Outside the window's dt= folders: never listed, so never read.
    _upload(storage_client, bucket, "p/dt=latest/part-0.parquet", b"not parquet")
    _upload(storage_client, bucket, "p/dt=2026-02-30/part-0.parquet", b"not parquet")
    _upload(storage_client, bucket, "p/other/part-0.parquet", b"not parquet")

    frame, window = _read(storage_client, bucket, _spec("parquet"))

    assert sorted(frame["a"].tolist()) == [*range(5), *range(10, 16), *range(20, 24)]
    assert window.rows == 15
    assert window.partition_count == 2
    assert window.first_partition == f"dt={AS_OF - timedelta(days=1)}"
    assert window.last_partition == f"dt={AS_OF}"
    assert window.file_count == 3
    read = [
        f"gs://{bucket}/{earlier}/x.parquet#{gens[2]}",
        f"gs://{bucket}/{day}/part-00000.parquet#{gens[1]}",
        f"gs://{bucket}/{day}/part-00001.parquet#{gens[0]}",
    ]
    assert window.files_sha256 == files_digest(read)
    assert window.bytes == sum(
        storage_client.bucket(bucket).get_blob(u.split("/", 3)[3].split("#")[0]).size for u in read
    )


def test_missing_values_are_kept_and_reported(storage_client, bucket_names):
    bucket = bucket_names["data"]
    csv = "a,b\n" + "\n".join(f"{i},{'' if i % 4 == 0 else i}" for i in range(20)) + "\n"
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", csv)

    frame, window = _read(storage_client, bucket, _spec())

    assert len(frame) == 20
    assert int(frame["b"].isna().sum()) == 5
    assert window.missing == {"a": 0.0, "b": 0.25}
    restored = DataWindow.from_dict(json.loads(json.dumps(window.to_dict())))
    assert restored == window
    assert window.to_dict()["start"] == str(AS_OF - timedelta(days=2))


def test_numeric_strings_in_parquet_are_converted(storage_client, bucket_names):
    bucket = bucket_names["data"]
    data = pd.DataFrame({"a": [str(i) for i in range(12)], "b": [" 1.5 "] * 11 + [""]})
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.parquet", _parquet(data))

    frame, window = _read(storage_client, bucket, _spec("parquet"))

    assert frame["a"].tolist() == [float(i) for i in range(12)]
    assert frame["b"].iloc[0] == 1.5
    assert window.missing["b"] == pytest.approx(1 / 12, abs=1e-6)


# --- errors -------------------------------------------------------------------------------------


def test_no_partitions_in_window_names_window_and_latest(storage_client, bucket_names):
    bucket = bucket_names["data"]
    old = AS_OF - timedelta(days=10)
    _upload(storage_client, bucket, f"p/dt={old}/part.csv", _ab(20).to_csv(index=False))
    _upload(storage_client, bucket, f"p/dt={old - timedelta(days=1)}/part.csv", "a,b\n1,2\n")
    _upload(storage_client, bucket, "p/dt=latest/part.csv", "a,b\n1,2\n")
    _upload(storage_client, bucket, "p/dt=20260310/part.csv", "a,b\n1,2\n")

    with pytest.raises(DataError) as info:
        _read(storage_client, bucket, _spec())
    msg = str(info.value)
    assert f"gs://{bucket}/p/" in msg
    assert f"{AS_OF - timedelta(days=2)}..{AS_OF}" in msg
    assert f"latest partition found: dt={old}" in msg
    # A producer writing the wrong folder names is told so.
    assert "2 folder(s) not named dt=YYYY-MM-DD, e.g. ['dt=20260310', 'dt=latest']" in msg


def test_no_partitions_at_all(storage_client, bucket_names):
    with pytest.raises(DataError, match=r"no dt= partitions .*latest partition found: none"):
        _read(storage_client, bucket_names["data"], _spec())


def test_partition_without_files_of_the_format(storage_client, bucket_names):
    bucket = bucket_names["data"]
    _upload(storage_client, bucket, f"p/dt={AS_OF}/_SUCCESS", b"")
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", _ab(20).to_csv(index=False))
    with pytest.raises(DataError, match=r"no \.parquet files .*part\.csv.*data\.format"):
        _read(storage_client, bucket, _spec("parquet"))


def test_files_with_zero_rows(storage_client, bucket_names):
    bucket = bucket_names["data"]
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part-0.csv", "a,b\n")
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part-1.csv", b"")
    with pytest.raises(DataError, match=rf"gs://{bucket}/p/: 2 \.csv file\(s\).*zero rows"):
        _read(storage_client, bucket, _spec())


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        ("parquet", b"this is not parquet at all"),
        ("csv", b'a,b\n1,2\n3,4,5,6,7\n"unterminated'),
    ],
)
def test_unparsable_file_is_named(storage_client, bucket_names, fmt, payload):
    bucket = bucket_names["data"]
    good = _ab(20).to_csv(index=False) if fmt == "csv" else _parquet(_ab(20))
    _upload(storage_client, bucket, f"p/dt={AS_OF}/good.{fmt}", good)
    _upload(storage_client, bucket, f"p/dt={AS_OF}/bad.{fmt}", payload)
    with pytest.raises(DataError, match=rf"gs://{bucket}/p/dt={AS_OF}/bad\.{fmt}: cannot parse"):
        _read(storage_client, bucket, _spec(fmt))


def test_missing_columns_names_them_the_file_and_what_exists(storage_client, bucket_names):
    bucket = bucket_names["data"]
    _upload(storage_client, bucket, f"p/dt={AS_OF}/ok.parquet", _parquet(_ab(20)))
    bad = _ab(20).rename(columns={"b": "bee"})
    _upload(storage_client, bucket, f"p/dt={AS_OF}/renamed.parquet", _parquet(bad))
    with pytest.raises(DataError) as info:
        _read(storage_client, bucket, _spec("parquet"))
    msg = str(info.value)
    assert f"gs://{bucket}/p/dt={AS_OF}/renamed.parquet" in msg
    assert "missing column(s) ['b']" in msg
    assert "available: ['a', 'bee', 'z']" in msg


def test_non_numeric_value_names_column_and_example(storage_client, bucket_names):
    bucket = bucket_names["data"]
    csv = "a,b\n" + "".join(f"{i},{i}\n" for i in range(15)) + "7,seven\n"
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", csv)
    with pytest.raises(DataError, match=r"column 'b' has 1 non-numeric value\(s\), e\.g\. 'seven'"):
        _read(storage_client, bucket, _spec())


def test_infinite_value_is_rejected(storage_client, bucket_names):
    bucket = bucket_names["data"]
    csv = "a,b\n" + "".join(f"{i},{i}\n" for i in range(15)) + "7,inf\n"
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", csv)
    with pytest.raises(DataError, match=r"column 'b' has 1 infinite value"):
        _read(storage_client, bucket, _spec())


def test_column_without_any_value_is_rejected(storage_client, bucket_names):
    bucket = bucket_names["data"]
    csv = "a,b\n" + "".join(f"{i},\n" for i in range(15))
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", csv)
    with pytest.raises(DataError, match=r"\['b'\] have no values"):
        _read(storage_client, bucket, _spec())


def test_null_target_is_rejected(storage_client, bucket_names):
    bucket = bucket_names["data"]
    csv = "a,b,y\n" + "".join(f"{i},{i},{'' if i == 3 else i % 2}\n" for i in range(15))
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", csv)
    with pytest.raises(DataError, match=r"part\.csv: target column 'y' has 1 missing"):
        _read(storage_client, bucket, _spec(), target="y")
    # A string target is fine and not converted.
    csv = "a,b,y\n" + "".join(f"{i},{i},{'yes' if i % 2 else 'no'}\n" for i in range(15))
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", csv)
    frame, _ = _read(storage_client, bucket, _spec(), target="y")
    assert set(frame["y"]) == {"yes", "no"}


def test_too_few_rows(storage_client, bucket_names):
    bucket = bucket_names["data"]
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", _ab(20).to_csv(index=False))
    with pytest.raises(DataError, match=r"only 20 rows .*need at least 50 \(data\.min_rows\)"):
        _read(storage_client, bucket, _spec(min_rows=50))
    frame, _ = _read(storage_client, bucket, _spec(min_rows=20))
    assert len(frame) == 20


def test_missing_bucket(storage_client, bucket_names):
    with pytest.raises(DataError, match=r"gs://no-such-bucket-warden: bucket not found"):
        _read(storage_client, "no-such-bucket-warden", _spec())


def test_import_does_not_load_heavy_libraries():
    code = (
        "import sys, warden.store.data, warden_local.examples\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'numpy', 'sklearn') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


# --- example data -------------------------------------------------------------------------------


def test_example_columns_match_warden_yaml():
    config = load_config(ROOT / "warden.yaml")
    segments = config.model("customer-segments")
    assert segments.features == CUSTOMER_FEATURES
    assert list(customer_frame(50).columns) == [*segments.features, "segment"]
    cancer = config.model("breast-cancer-risk")
    frame = breast_cancer_frame()
    assert set(cancer.features) <= set(frame.columns)
    assert cancer.target in frame.columns
    assert frame.shape == (569, 31)


def test_customer_frame_is_plausible_and_deterministic():
    frame = customer_frame(1000, seed=3)
    assert len(frame) == 1000
    assert frame["segment"].value_counts().to_dict() == {
        "bargain": 300, "dormant": 300, "loyal": 200, "new": 200,
    }  # fmt: skip
    assert (frame[["recency_days", "orders_per_year", "tenure_months"]] >= 0).all().all()
    assert (frame["avg_order_value"] > 0).all()
    for share in ("discount_share", "web_share"):
        assert frame[share].between(0, 1).all()
    medians = frame.groupby("segment")["recency_days"].median()
    assert medians["dormant"] > 5 * medians["loyal"]
    pd.testing.assert_frame_equal(frame, customer_frame(1000, seed=3))
    assert not frame.equals(customer_frame(1000, seed=4))
    with pytest.raises(ValueError, match="shift"):
        customer_frame(10, shift=1.5)


def test_shift_lowers_the_silhouette():
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    def score(shift: float) -> float:
        data = customer_frame(1500, seed=5, shift=shift)[CUSTOMER_FEATURES].astype(float)
        x = StandardScaler().fit_transform(data)
        labels = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(x)
        return float(silhouette_score(x, labels))

    base, shifted = score(0.0), score(1.0)
    assert base >= 0.35
    assert shifted <= 0.8 * base


def test_breast_cancer_labels_and_noise():
    clean = breast_cancer_frame()
    assert clean["malignant"].value_counts().to_dict() == {1: 212, 0: 357}
    assert {"mean_radius", "mean_concave_points", "worst_concave_points"} <= set(clean.columns)
    # sklearn's first sample is malignant (target 0) with mean radius 17.99.
    assert clean.loc[0, "mean_radius"] == pytest.approx(17.99)
    assert clean.loc[0, "malignant"] == 1

    noisy = breast_cancer_frame(label_noise=0.1, seed=7)
    flipped = int((noisy["malignant"] != clean["malignant"]).sum())
    assert flipped == round(0.1 * 569) == 57
    pd.testing.assert_frame_equal(noisy, breast_cancer_frame(label_noise=0.1, seed=7))
    pd.testing.assert_frame_equal(noisy.drop(columns="malignant"), clean.drop(columns="malignant"))


def test_write_partitions_layout(storage_client, bucket_names):
    bucket = bucket_names["data"]
    names = write_partitions(
        storage_client, bucket=bucket, prefix="/c/", frame=_ab(10), fmt="csv", end=AS_OF, days=3
    )
    assert names == [f"c/dt={AS_OF - timedelta(days=2 - i)}/part-00000.csv" for i in range(3)]
    chunks = [
        pd.read_csv(io.BytesIO(storage_client.bucket(bucket).blob(n).download_as_bytes()))
        for n in names
    ]
    assert [len(c) for c in chunks] == [3, 4, 3]
    assert pd.concat(chunks)["a"].tolist() == list(range(10))


def test_object_replaced_after_listing_is_not_read_silently(
    storage_client, bucket_names, monkeypatch
):
    bucket = bucket_names["data"]
    name = f"p/dt={AS_OF}/part.csv"
    _upload(storage_client, bucket, name, _ab(12).to_csv(index=False))
    listing = storage_client.list_blobs

    def list_then_replace(*args, **kwargs):
        blobs = list(listing(*args, **kwargs))
        _upload(storage_client, bucket, name, _ab(30, start=500).to_csv(index=False))
        return iter(blobs)

    monkeypatch.setattr(storage_client, "list_blobs", list_then_replace)
    # The listed generation is gone: reading the newer one would make the manifest lie.
    with pytest.raises(RetryableError, match="changed while being read"):
        _read(storage_client, bucket, _spec())


def test_transient_google_errors_propagate(storage_client, bucket_names, monkeypatch):
    from google.api_core.exceptions import ServiceUnavailable

    def unavailable(*args, **kwargs):
        raise ServiceUnavailable("try again")

    monkeypatch.setattr(storage_client, "list_blobs", unavailable)
    with pytest.raises(ServiceUnavailable):
        _read(storage_client, bucket_names["data"], _spec())


# --- bounded inputs -----------------------------------------------------------------------------


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """Names of every object downloaded through google-cloud-storage during the test."""
    from google.cloud.storage import Blob

    seen: list[str] = []
    real = Blob.download_as_bytes

    def counting(self, *args, **kwargs):
        seen.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Blob, "download_as_bytes", counting)
    return seen


@pytest.fixture
def listings(storage_client, monkeypatch) -> list[tuple[str, list[str]]]:
    """(prefix, names yielded) for every list_blobs call the reader makes during the test."""
    calls: list[tuple[str, list[str]]] = []
    real = storage_client.list_blobs

    def recording(bucket, *args, **kwargs):
        blobs = list(real(bucket, *args, **kwargs))
        calls.append((kwargs.get("prefix", ""), [b.name for b in blobs]))
        return iter(blobs)

    monkeypatch.setattr(storage_client, "list_blobs", recording)
    return calls


def test_oversized_object_is_refused_from_the_listing_before_any_download(
    storage_client, bucket_names, monkeypatch, downloads
):
    bucket = bucket_names["data"]
    small = _ab(20).to_csv(index=False)
    big = _ab(400).to_csv(index=False)
    _upload(storage_client, bucket, f"p/dt={AS_OF - timedelta(days=1)}/part-0.csv", small)
    gen = _upload(storage_client, bucket, f"p/dt={AS_OF}/part-0.csv", big)
    monkeypatch.setattr(datasource, "MAX_OBJECT_BYTES", len(big) - 1)

    with pytest.raises(DataError) as info:
        _read(storage_client, bucket, _spec())

    msg = str(info.value)
    assert f"gs://{bucket}/p/dt={AS_OF}/part-0.csv#{gen}" in msg
    assert f"{len(big):,} bytes" in msg
    assert f"{len(big) - 1:,}-byte limit" in msg
    assert downloads == []  # not even the small file read before it

    # At exactly the limit the same file is read.
    monkeypatch.setattr(datasource, "MAX_OBJECT_BYTES", len(big))
    frame, window = _read(storage_client, bucket, _spec())
    assert len(frame) == 420
    assert window.bytes == len(small) + len(big)
    assert len(downloads) == 2


def test_too_many_files_in_the_window_are_refused_before_any_download(
    storage_client, bucket_names, monkeypatch, downloads
):
    bucket = bucket_names["data"]
    for i in range(4):
        _upload(storage_client, bucket, f"p/dt={AS_OF}/part-{i}.csv", _ab(5).to_csv(index=False))
    monkeypatch.setattr(datasource, "MAX_WINDOW_FILES", 3)
    with pytest.raises(DataError, match=r"more than 3 \.csv files in the window"):
        _read(storage_client, bucket, _spec())
    assert downloads == []
    monkeypatch.setattr(datasource, "MAX_WINDOW_FILES", 4)
    assert len(_read(storage_client, bucket, _spec())[0]) == 20


def _wide_csv(n: int, *, extra: dict[str, list[int]]) -> str:
    """``n`` filler columns with long names, then the ``extra`` columns (one row per value)."""
    names = [f"unused_feature_with_a_long_name_{i:06d}" for i in range(n)] + list(extra)
    rows = len(next(iter(extra.values())))
    lines = [",".join(["1"] * n + [str(v[r]) for v in extra.values()]) for r in range(rows)]
    return "\n".join([",".join(names), *lines]) + "\n"


def test_over_wide_files_are_refused_before_any_row_is_parsed(
    storage_client, bucket_names, monkeypatch
):
    """A 200k-column file (the configured columns present) is refused from its header: no row
    is parsed, and the message stays bounded (the old one quoted every name: ~8 MB)."""
    bucket = bucket_names["data"]
    payload = _wide_csv(200_000, extra={"a": list(range(12)), "b": list(range(12, 24))})
    assert len(payload) > 7_000_000
    _upload(storage_client, bucket, f"p/dt={AS_OF}/wide.csv", payload)
    parsed: list[object] = []
    read_csv = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: parsed.append(k) or read_csv(*a, **k))

    with pytest.raises(DataError) as info:
        _read(storage_client, bucket, _spec())

    msg = str(info.value)
    assert parsed == []
    assert len(msg) <= datasource.MAX_ERROR_CHARS
    assert len(msg) < 1_500
    assert f"gs://{bucket}/p/dt={AS_OF}/wide.csv: 200,002 columns, more than the 10,000" in msg
    assert "'unused_feature_with_a_long_name_000000'" in msg
    assert "and 199,992 more" in msg  # 10 named
    monkeypatch.setattr(datasource, "MAX_COLUMNS", 250_000)  # the limit, not the file, refused it
    monkeypatch.setattr(pd, "read_csv", read_csv)
    assert _read(storage_client, bucket, _spec())[0].to_dict("list") == {
        "a": list(range(12)),
        "b": list(range(12, 24)),
    }


def test_over_wide_csv_missing_a_column_gets_a_bounded_message(storage_client, bucket_names):
    bucket = bucket_names["data"]
    payload = _wide_csv(9_000, extra={"a": [1, 2, 3]})
    _upload(storage_client, bucket, f"p/dt={AS_OF}/wide.csv", payload)

    with pytest.raises(DataError) as info:
        _read(storage_client, bucket, _spec())

    msg = str(info.value)
    assert len(msg) < 1_500
    assert f"gs://{bucket}/p/dt={AS_OF}/wide.csv: missing column(s) ['b']" in msg
    assert "'unused_feature_with_a_long_name_000000'" in msg
    assert "and 8,991 more" in msg  # 9,001 columns, 10 named


def test_over_wide_parquet_missing_a_column_gets_a_bounded_message(storage_client, bucket_names):
    bucket = bucket_names["data"]
    wide = pd.DataFrame({f"unused_{'x' * 300}_{i:05d}": [1.0, 2.0] for i in range(5_000)})
    wide["a"] = [1.0, 2.0]
    _upload(storage_client, bucket, f"p/dt={AS_OF}/wide.parquet", _parquet(wide))

    with pytest.raises(DataError) as info:
        _read(storage_client, bucket, _spec("parquet"))

    msg = str(info.value)
    assert len(msg) <= datasource.MAX_ERROR_CHARS
    assert "missing column(s) ['b']" in msg
    assert "(313 characters)" in msg  # each quoted name is shortened too
    assert "and 4,991 more" in msg


def test_wide_files_parse_only_the_configured_columns(storage_client, bucket_names, monkeypatch):
    import pyarrow.parquet as pq

    bucket = bucket_names["data"]
    _upload(
        storage_client,
        bucket,
        f"p/dt={AS_OF}/wide.csv",
        _wide_csv(9_000, extra={"b": list(range(100, 112)), "a": list(range(12))}),
    )
    wide = pd.DataFrame({f"unused_{i}": np.arange(12.0) for i in range(2_000)})
    wide["a"], wide["b"] = np.arange(10, 22), np.arange(20, 32)
    _upload(storage_client, bucket, f"p/dt={AS_OF - timedelta(days=1)}/w.parquet", _parquet(wide))
    asked: list[tuple[str, list[str]]] = []
    read_csv, read_parquet = pd.read_csv, pq.ParquetFile.read

    def spy_csv(*args, **kwargs):
        asked.append(("csv", list(kwargs.get("usecols") or ["<all>"])))
        return read_csv(*args, **kwargs)

    def spy_parquet(self, *args, **kwargs):
        asked.append(("parquet", list(kwargs.get("columns") or ["<all>"])))
        return read_parquet(self, *args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", spy_csv)
    monkeypatch.setattr(pq.ParquetFile, "read", spy_parquet)

    frame, _ = _read(storage_client, bucket, _spec())
    assert frame.to_dict("list") == {"a": list(range(12)), "b": list(range(100, 112))}
    frame, _ = _read(storage_client, bucket, _spec("parquet"))
    assert frame.to_dict("list") == {"a": list(range(10, 22)), "b": list(range(20, 32))}
    assert asked == [("csv", ["a", "b"]), ("parquet", ["a", "b"])]


def test_a_huge_value_is_quoted_briefly(storage_client, bucket_names):
    bucket = bucket_names["data"]
    blob = "x" * 300_000
    csv = "a,b\n" + "".join(f"{i},{i}\n" for i in range(15)) + f"7,{blob}\n"
    _upload(storage_client, bucket, f"p/dt={AS_OF}/part.csv", csv)
    with pytest.raises(DataError) as info:
        _read(storage_client, bucket, _spec())
    msg = str(info.value)
    assert "column 'b' has 1 non-numeric value(s), e.g. 'xxxx" in msg
    assert "(300,000 characters)" in msg
    assert len(msg) < 300


def test_only_the_window_partitions_are_listed(storage_client, bucket_names, listings, downloads):
    """Two years of history around a three-day window: the reader lists the window's three
    dt= folders and nothing else. Every object outside them is unreadable: reading one fails."""
    bucket = bucket_names["data"]
    window = [AS_OF - timedelta(days=2 - i) for i in range(3)]
    for i, day in enumerate(window):
        _upload(
            storage_client,
            bucket,
            f"p/dt={day}/part-0.csv",
            _ab(10, start=10 * i).to_csv(index=False),
        )
    outside = [AS_OF - timedelta(days=3 + 7 * k) for k in range(40)]
    outside += [AS_OF + timedelta(days=1 + 7 * k) for k in range(10)]
    for day in outside:
        _upload(storage_client, bucket, f"p/dt={day}/part-0.csv", b'"broken')
    _upload(storage_client, bucket, f"p/dt={AS_OF}x/part-0.csv", b'"broken')  # same prefix text

    frame, window_read = _read(storage_client, bucket, _spec())

    assert sorted(frame["a"].tolist()) == list(range(30))
    assert [prefix for prefix, _ in listings] == [f"p/dt={day}/" for day in window]
    listed = [name for _, names in listings for name in names]
    assert listed == [f"p/dt={day}/part-0.csv" for day in window]
    assert sorted(downloads) == sorted(listed)
    assert window_read.partition_count == 3


def test_window_summary_does_not_grow_with_the_number_of_files(storage_client, bucket_names):
    bucket = bucket_names["data"]

    def write(prefix: str, files_per_day: int) -> list[str]:
        uris = []
        for day in (AS_OF - timedelta(days=1), AS_OF):
            for i in range(files_per_day):
                name = f"{prefix}/dt={day}/part-{i:05d}.csv"
                part = _ab(60 // files_per_day, start=i).to_csv(index=False)
                uris.append(f"gs://{bucket}/{name}#{_upload(storage_client, bucket, name, part)}")
        return uris

    few, many = write("few", 1), write("many", 60)
    spec = dict(format="csv", window_days=2, min_rows=10)
    sizes = {}
    for prefix, uris in (("few", few), ("many", many)):
        _, window = _read(storage_client, bucket, DataSpec(prefix=prefix, **spec))
        assert window.file_count == len(uris)
        assert window.files_sha256 == files_digest(uris)  # still pins every object read
        assert window.rows == 120
        assert DataWindow.from_dict(json.loads(json.dumps(window.to_dict()))) == window
        sizes[prefix] = len(json.dumps(window.to_dict()))
    # 120 files instead of 2 changes a few digits; a list of them would add ~7 KB.
    assert abs(sizes["many"] - sizes["few"]) <= 8


def test_an_older_manifest_window_still_reads():
    legacy = {
        "start": "2026-03-08",
        "end": "2026-03-10",
        "partitions": ["dt=2026-03-09", "dt=2026-03-10"],
        "files": ["gs://b/p/dt=2026-03-09/a.csv#1", "gs://b/p/dt=2026-03-10/a.csv#2"],
        "rows": 40,
        "missing": {"a": 0.0},
    }
    window = DataWindow.from_dict(legacy)
    assert (window.partition_count, window.file_count) == (2, 2)
    assert (window.first_partition, window.last_partition) == ("dt=2026-03-09", "dt=2026-03-10")
    assert window.files_sha256 == files_digest(legacy["files"])


# --- the monitor's scoring sample ---------------------------------------------------------------


def _window_frames(client, bucket: str, sizes: tuple[int, ...]) -> list[pd.DataFrame]:
    """One CSV file per day of the window, oldest first, with ``sizes`` rows of scikit-learn's
    breast-cancer data (repeated as needed; ``source`` numbers the file, ``row`` each row),
    read back through the monitor's reader."""
    cancer = breast_cancer_frame()
    start = 0
    for i, n in enumerate(sizes):
        day = AS_OF - timedelta(days=len(sizes) - 1 - i)
        part = cancer.iloc[np.arange(start, start + n) % len(cancer)][["mean_radius"]]
        part = part.assign(source=i, row=np.arange(start, start + n))
        _upload(client, bucket, f"p/dt={day}/part-0.csv", part.to_csv(index=False))
        start += n
    reader = datasource.WindowReader(
        client,
        bucket=bucket,
        spec=_spec(window_days=len(sizes)),
        columns=["mean_radius", "source", "row"],
        as_of=AS_OF,
    )
    return list(reader.frames())


@pytest.mark.parametrize("sizes", [(100, 1_000, 5_000), (5_000, 1_000, 100)])
def test_scoring_sample_is_uniform_over_the_whole_window(storage_client, bucket_names, sizes):
    """Files of very different sizes: each file's share of the sample is its share of the
    window's rows, whichever order they come in. The old sampler (every file appended whole,
    the pool cut back to `limit` rows whenever it passed 2 × limit) over-represented the files
    read after a cut: 94% of the sample from the 5,000-row file where it holds 82% of the rows,
    25% from the last 100-row file where it holds 1.6%."""
    frames = _window_frames(storage_client, bucket_names["data"], sizes)
    total, limit, seeds = sum(sizes), 300, 20
    assert [len(f) for f in frames] == list(sizes)

    drawn = np.zeros(len(sizes))
    for seed in range(seeds):
        sample = datasource.RowSample(limit, seed=seed)
        for frame in frames:
            sample.add(frame)
            assert sample.held <= 2 * limit  # memory: the sample plus the file being added
        got = sample.frame()
        assert sample.rows == total
        assert len(got) == limit
        assert got["row"].is_unique  # without replacement
        assert got["row"].is_monotonic_increasing  # in the order the rows were read
        drawn += np.bincount(got["source"].astype(int), minlength=len(sizes))

    # Pooled over 20 seeds, n = 6,000 draws. Each file's count has at most the binomial
    # variance n·p·(1 − p) (sampling without replacement only lowers it), so the share is
    # allowed 4 binomial standard deviations: 0.020 for the 5,000-row file, 0.0065 for the
    # 100-row one. The old sampler missed by 0.12 and 0.23.
    n = seeds * limit
    for i, rows in enumerate(sizes):
        p = rows / total
        tolerance = 4 * np.sqrt(p * (1 - p) / n)
        assert abs(drawn[i] / n - p) <= tolerance, (i, drawn[i] / n, p, tolerance)


def test_scoring_sample_is_deterministic_given_its_seed(storage_client, bucket_names):
    frames = _window_frames(storage_client, bucket_names["data"], (700, 50, 1_300))

    def draw(seed: int, limit: int = 400) -> pd.DataFrame:
        sample = datasource.RowSample(limit, seed=seed)
        for frame in frames:
            sample.add(frame)
        return sample.frame()

    pd.testing.assert_frame_equal(draw(5), draw(5))
    assert not draw(5)["row"].equals(draw(6)["row"])
    everything = draw(5, limit=10_000)  # a window smaller than the limit comes back whole
    assert everything["row"].tolist() == list(range(2_050))
    assert datasource.RowSample(10, seed=0).frame() is None
