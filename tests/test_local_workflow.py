"""The local workflow: `warden local upload` (data into a model's partitions, checked against its
features), `warden local up --persist` (storage across restarts), `warden local reload` (an edited
warden.yaml picked up by the running functions and Scheduler), the `eval` hint with a custom run
folder, and the one-sentence answer when there are neither credentials nor emulators.

Upload's checks and layout run against the session's storage emulator, and what it writes is read
back with the training data reader itself; one light stack (only the health function) covers the
parts that need a running stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner

from stack_process import EMULATOR_VARS, local_stack, wait_for
from warden.cli.common import EXIT_CREDENTIALS, EXIT_ERROR, EXIT_NOT_FOUND
from warden.cli.main import main
from warden.config import load_config
from warden.store.data import read_training_frame
from warden_local.examples import breast_cancer_frame, customer_frame

ROOT = Path(__file__).resolve().parents[1]
RISK, SEG = "breast-cancer-risk", "customer-segments"
AS_OF = date(2026, 11, 20)
CONFIG = load_config(ROOT / "warden.yaml")


def _read_back(client, bucket: str, model: str, as_of: date = AS_OF):
    """What a retrain of ``model`` as of ``as_of`` reads from ``bucket``."""
    cfg = CONFIG.model(model)
    return read_training_frame(
        client,
        bucket=bucket,
        spec=cfg.data,
        columns=cfg.features,
        as_of=as_of,
        target=cfg.target,
    )


@pytest.fixture
def upload_env(storage_client, bucket_names, monkeypatch) -> str:
    """This shell points at the session's storage emulator with this test's data bucket."""
    monkeypatch.setenv("WARDEN_DATA_BUCKET", bucket_names["data"])
    monkeypatch.setenv("WARDEN_CONFIG", str(ROOT / "warden.yaml"))
    monkeypatch.delenv("WARDEN_LOCAL_CLOCK", raising=False)
    return bucket_names["data"]


def _upload(*args: str, as_json: bool = False):
    return CliRunner().invoke(main, [*(["--json"] if as_json else []), "local", "upload", *args])


def test_a_file_lands_in_its_days_partition_where_the_reader_finds_it(
    upload_env, storage_client, tmp_path
) -> None:
    frame = breast_cancer_frame()
    frame.to_csv(tmp_path / "clinic.csv", index=False)
    out = _upload(RISK, str(tmp_path / "clinic.csv"), "--date", AS_OF.isoformat())
    assert out.exit_code == 0, out.output
    names = [b.name for b in storage_client.list_blobs(upload_env)]
    assert names == [f"breast-cancer/dt={AS_OF.isoformat()}/clinic.csv"]
    read, window = _read_back(storage_client, upload_env, RISK)
    assert len(read) == len(frame)
    assert window.partition_count == 1

    # No --date: today's partition (the day read on either side of the call, should it be
    # midnight).
    before = datetime.now(UTC).date()
    out = _upload(RISK, str(tmp_path / "clinic.csv"), as_json=True)
    after = datetime.now(UTC).date()
    assert out.exit_code == 0, out.output
    (obj,) = json.loads(out.stdout)["objects"]
    assert obj["object"] in {
        f"gs://{upload_env}/breast-cancer/dt={d.isoformat()}/clinic.csv" for d in (before, after)
    }


def test_a_folder_is_mirrored_by_the_days_in_its_paths_and_converted(
    upload_env, storage_client, tmp_path
) -> None:
    frame = customer_frame(600, seed=3)
    parts = [frame.iloc[:200], frame.iloc[200:400], frame.iloc[400:]]
    (tmp_path / "dt=2026-11-18").mkdir()
    parts[0].to_parquet(tmp_path / "dt=2026-11-18" / "part-0.parquet", index=False)
    (tmp_path / "2026-11-19" / "shop").mkdir(parents=True)
    parts[1].to_csv(tmp_path / "2026-11-19" / "shop" / "a.csv", index=False)  # below the day
    parts[2].to_csv(tmp_path / "customers-2026-11-20.csv", index=False)
    (tmp_path / "_SUCCESS").write_text("")  # Spark's marker: left out, as the reader does
    (tmp_path / "notes.txt").write_text("not data")

    out = _upload(SEG, str(tmp_path), as_json=True)
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["partitions"] == ["2026-11-18", "2026-11-19", "2026-11-20"]
    assert report["skipped"] == [str(tmp_path / "notes.txt")]
    assert sorted(b.name for b in storage_client.list_blobs(upload_env)) == [
        "customers/dt=2026-11-18/part-0.parquet",
        "customers/dt=2026-11-19/a.parquet",  # CSV converted to the model's format
        "customers/dt=2026-11-20/customers-2026-11-20.parquet",
    ]
    read, window = _read_back(storage_client, upload_env, SEG)
    assert window.partition_count == 3
    assert len(read) == len(frame)
    assert read["recency_days"].sum() == pytest.approx(float(frame["recency_days"].sum()))


def test_what_is_missing_is_named_and_nothing_is_uploaded(
    upload_env, storage_client, tmp_path
) -> None:
    good = breast_cancer_frame()
    (tmp_path / "dt=2026-11-19").mkdir()
    good.to_csv(tmp_path / "dt=2026-11-19" / "good.csv", index=False)
    good.drop(columns=["worst_area", "malignant"]).to_csv(
        tmp_path / "dt=2026-11-19" / "bad.csv", index=False
    )
    out = _upload(RISK, str(tmp_path))
    assert out.exit_code == EXIT_ERROR
    assert "nothing uploaded for breast-cancer-risk" in out.stderr
    assert "bad.csv: missing column(s) ['worst_area', 'malignant']" in out.stderr
    assert "good.csv" not in out.stderr
    assert list(storage_client.list_blobs(upload_env)) == []

    # Only the labels missing: refused for training, taken for monitoring with --unlabeled.
    unlabeled = tmp_path / "unlabeled.csv"
    good.drop(columns=["malignant"]).to_csv(unlabeled, index=False)
    out = _upload(RISK, str(unlabeled), "--date", AS_OF.isoformat())
    assert out.exit_code == EXIT_ERROR
    assert "missing column(s) ['malignant']" in out.stderr
    assert "--unlabeled" in out.stderr
    assert list(storage_client.list_blobs(upload_env)) == []
    out = _upload(RISK, str(unlabeled), "--date", AS_OF.isoformat(), "--unlabeled")
    assert out.exit_code == 0, out.output
    assert [b.name for b in storage_client.list_blobs(upload_env)] == [
        f"breast-cancer/dt={AS_OF.isoformat()}/unlabeled.csv"
    ]

    # A file whose day the path does not tell.
    undated = tmp_path / "undated"
    (undated / "misc").mkdir(parents=True)
    good.to_csv(undated / "misc" / "export.csv", index=False)
    out = _upload(RISK, str(undated))
    assert out.exit_code == EXIT_ERROR
    assert "no day in the path of ['misc/export.csv']" in out.stderr


def test_no_stack_and_no_emulator_says_what_to_do(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    (tmp_path / "x.csv").write_text("a\n1\n")
    out = _upload(RISK, str(tmp_path / "x.csv"), "--run-dir", str(tmp_path / "run"))
    assert out.exit_code == EXIT_NOT_FOUND
    assert f"no running stack in {tmp_path / 'run'} and no STORAGE_EMULATOR_HOST" in out.stderr


@pytest.mark.parametrize("args", [["models"], ["jobs", "list"]])
def test_no_credentials_and_no_emulator_is_one_sentence_not_a_traceback(
    args, monkeypatch, tmp_path
) -> None:
    for key in (*EMULATOR_VARS, "GOOGLE_APPLICATION_CREDENTIALS", "WARDEN_SCHEDULER_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login to find
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # and no metadata server to wait for
    out = CliRunner().invoke(main, ["--config", str(ROOT / "warden.yaml"), *args])
    assert out.exit_code == EXIT_CREDENTIALS, out.output
    assert isinstance(out.exception, SystemExit)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert 'eval "$(warden local env)"' in lines[0]
    assert "gcloud auth application-default login" in lines[0]
    assert "Traceback" not in out.output


# -- one light stack: hint, upload by run folder, reload, persistence --------------------------


def _config(*models: str) -> str:
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["models"] = {m: raw["models"][m] for m in models}
    raw.pop("alerting")  # no flush ticks: nothing runs on the clock here
    return yaml.safe_dump(raw)


def _warden(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "warden.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _health_models(state: dict) -> list[str]:
    return sorted(requests.get(state["functions"]["health"], timeout=30).json()["models"])


def test_a_persisted_stack_takes_uploads_and_reloads_and_keeps_its_data(tmp_path) -> None:
    config = tmp_path / "warden.yaml"
    config.write_text(_config(RISK))
    persist = tmp_path / "gcs"
    data = tmp_path / "clinic.csv"
    breast_cancer_frame().to_csv(data, index=False)
    # A shell that points at no stack: the commands find it by its run folder.
    bare = {
        k: v for k, v in os.environ.items() if k not in EMULATOR_VARS and not k.startswith("WARDEN")
    }
    (tmp_path / "a").mkdir()
    with local_stack(
        tmp_path / "a", config, speed=1, only="health", extra_args=("--persist", str(persist))
    ) as stack:
        run = str(stack.run_dir)
        out_file = tmp_path / "a" / "stack.out"
        hint = f'eval "$(warden local env --run-dir {run})"'
        wait_for(lambda: hint in out_file.read_text(), 30, "the eval hint with --run-dir")
        assert f"storage kept in {persist}" in out_file.read_text()

        args = ("local", "upload", RISK, str(data), "--date", "2026-11-20", "--run-dir", run)
        up = _warden(bare, tmp_path, *args)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"gs://warden-data/breast-cancer/dt=2026-11-20/{data.name}" in up.stdout

        # warden.yaml edited: the functions and the Scheduler take it on `warden local reload`.
        assert _health_models(stack.state) == [RISK]
        config.write_text(_config(RISK, SEG))
        done = _warden(bare, tmp_path, "local", "reload", "--run-dir", run)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "reloaded: 2 model(s)" in done.stdout
        assert _health_models(stack.state) == [RISK, SEG]  # same URL, new process
        jobs = {j["job"] for j in stack.warden_json("jobs", "list")}
        assert {f"{SEG}-retrain", f"{SEG}-monitor", f"{SEG}-housekeeping"} <= jobs

        # A config that does not validate changes nothing, and says why.
        config.write_text(config.read_text().replace("task: clustering", "task: forecasting"))
        refused = _warden(bare, tmp_path, "local", "reload", "--run-dir", run)
        assert refused.returncode == EXIT_ERROR
        assert "reload refused, the stack runs as before" in refused.stderr
        assert "models.customer-segments.task" in refused.stderr
        assert _health_models(stack.state) == [RISK, SEG]
        config.write_text(_config(RISK, SEG))
        blob = f"breast-cancer/dt=2026-11-20/{data.name}"
        first = _generation(stack.env, blob)

    # The same storage folder again: buckets already there, the data with them.
    (tmp_path / "b").mkdir()
    with local_stack(
        tmp_path / "b", config, speed=1, only="health", extra_args=("--persist", str(persist))
    ) as again:
        assert again.env["STORAGE_EMULATOR_HOST"] != stack.env["STORAGE_EMULATOR_HOST"]
        assert _generation(again.env, blob) == first


def _generation(env: dict[str, str], name: str) -> int | None:
    """The object's generation in that stack's data bucket, through the real client."""
    from google.cloud import storage

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
        blob = storage.Client(project=env["WARDEN_PROJECT"]).bucket("warden-data").get_blob(name)
    return blob.generation if blob is not None else None
