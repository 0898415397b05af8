"""The job runner end to end: the retrain and monitor functions' code hands a request to a
Cloud Run job through the real ``google-cloud-run`` client (REST) and the Cloud Run stand-in
runs ``python -m warden.jobs.task`` as local task processes against the storage emulator, with
the environment Cloud Run gives a task, retrying failed tasks like the job's ``maxRetries``."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack_process import wait_for
from warden.config import parse_config
from warden.jobs.dispatch import DispatchOutcome, choose, dispatch, hand_off
from warden.jobs.messages import RunRequest
from warden.jobs.monitor import monitor
from warden.jobs.retrain import retrain
from warden.jobs.task import COMMAND
from warden_local.cloudrun import CloudRunStandIn

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "warden.yaml").read_text())
TRAINED = date(2026, 11, 1)
LATER = date(2026, 11, 20)
SEG = "customer-segments"
PROJECT, LOCATION = "warden-test", "europe-west1"
#: Run-specific fields of a manifest: who ran it, when, under which request.
#: Files that show their run (the version report prints when and by which request).
RUN_FILES = {"report.html"}
RUN_FIELDS = {"created_at", "run_id", "request", "actor", "duration_s", "code_version"}


def _config(tmp_path: Path, **runners: dict[str, Any]) -> Path:
    raw = copy.deepcopy(RAW)
    for model in raw["models"].values():
        model["drift"] = {"window_days": 7}
    raw["models"][SEG]["runners"] = runners
    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def standin(tmp_path, bucket_names) -> Iterator[CloudRunStandIn]:
    env = {
        **os.environ,
        "WARDEN_PROJECT": PROJECT,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_ALERT_BUCKET": bucket_names["alerts"],
        "WARDEN_DATA_BUCKET": bucket_names["data"],
        "WARDEN_BACKUP_BUCKET": bucket_names["backup"],
        "WARDEN_METRICS": "off",
        "OMP_NUM_THREADS": "1",
    }
    with CloudRunStandIn(
        project=PROJECT, location=LOCATION, log_dir=tmp_path / "tasks", env=env
    ) as server:
        yield server


def _job(standin: CloudRunStandIn, kind: str, config: Path, max_retries: int = 2) -> str:
    container = {
        "image": "local/warden-jobs",
        "command": [sys.executable, *COMMAND[1:]],
        "env": [
            {"name": "WARDEN_JOB", "value": kind},
            {"name": "WARDEN_CONFIG", "value": str(config)},
        ],
    }
    standin.create_job(
        f"warden-{kind}",
        {"template": {"template": {"containers": [container], "maxRetries": max_retries}}},
    )
    return f"{standin.parent}/jobs/warden-{kind}"


@pytest.fixture
def runtime_for(make_runtime, standin):
    def build(config: Path, **settings: Any):
        rt = make_runtime(
            project=PROJECT,
            run_endpoint=standin.url,
            config_path=config,
            **settings,
        )
        rt._config = parse_config(yaml.safe_load(config.read_text()))
        return rt

    return build


def _request(key: str, as_of: date = TRAINED, model: str = SEG) -> RunRequest:
    return RunRequest(model=model, reason="manual", key=key, message_id=key, as_of=as_of)


def _versions(rt, model: str = SEG) -> list[int]:
    return [m["version"] for m in rt.registry().versions(model)]


def test_a_retrain_on_the_job_path_gives_the_version_the_function_path_gives(
    tmp_path, seed, standin, runtime_for, make_runtime, storage_client
) -> None:
    seed(end=TRAINED, days=7, customer_rows=1500, seed=1, models=(SEG,))
    config = _config(tmp_path, retrain={"runner": "job"})
    rt = runtime_for(config, retrain_job=_job(standin, "retrain", config))
    request = _request("job-retrain")

    outcome = dispatch(request, rt, "retrain", retrain, actor="retrain_model")
    assert isinstance(outcome, DispatchOutcome)
    assert outcome.status == "dispatched"
    execution = standin.wait(outcome.execution, timeout=120)
    assert execution["succeededCount"] == 1
    assert _versions(rt) == [1]
    # A redelivery of the request is not handed on again: its run is done.
    again = dispatch(request, rt, "retrain", retrain, actor="retrain_model")
    assert (again.status, again.detail) == ("duplicate", "already done")
    assert len(standin.list_executions("warden-retrain")) == 1

    # The function path, on the same data, in a registry of its own.
    storage_client.create_bucket(f"fn-{rt.settings.registry_bucket}")
    here = make_runtime(registry_bucket=f"fn-{rt.settings.registry_bucket}", install=False)
    here._config = parse_config(yaml.safe_load(config.read_text()))
    assert retrain(_request("function-retrain"), here).version == 1

    def contents(runtime) -> dict[str, Any]:
        manifest = runtime.registry().manifest(SEG, 1)
        out = {k: v for k, v in manifest.items() if k not in RUN_FIELDS | {"files"}}
        # The artifacts by content (generations are per object; the report shows its run).
        out["files"] = {
            name: entry["sha256"]
            for name, entry in manifest["files"].items()
            if name not in RUN_FILES
        }
        return out

    job_manifest, function_manifest = contents(rt), contents(here)
    assert job_manifest["metrics"]  # the comparison compares something
    assert "model.joblib" in job_manifest["files"]
    assert job_manifest == function_manifest


def test_a_task_killed_mid_run_is_retried_and_the_run_yields_one_version(
    tmp_path, seed, standin, runtime_for
) -> None:
    seed(end=TRAINED, days=7, customer_rows=6000, seed=1, models=(SEG,))
    config = _config(tmp_path, retrain={"runner": "job"})
    rt = runtime_for(config, retrain_job=_job(standin, "retrain", config))
    request = _request("killed")
    outcome = hand_off(request, rt, "retrain")

    # Once the attempt has claimed the request in the run ledger, kill it (its whole group).
    marker = wait_for(
        lambda: rt.ledger().marker(SEG, "retrain", request.key),
        60,
        "the attempt's claim",
        interval=0.01,
    )
    first = standin.task_processes(outcome.execution)
    assert len(first) == 1
    os.killpg(first[0].pid, signal.SIGKILL)
    assert marker["status"] == "running"
    assert marker["owner"].endswith("/0")  # EXECUTION/TASK_INDEX

    execution = standin.wait(outcome.execution, timeout=120)
    assert execution["succeededCount"] == 1
    assert execution.get("retriedCount") == 1
    assert _versions(rt) == [1]
    final = rt.ledger().marker(SEG, "retrain", request.key)
    assert final["status"] == "done"
    assert final["attempt"] == 2  # the retry took its own dead attempt's claim over at once


def test_a_sharded_monitor_job_with_a_task_killed_mid_run_equals_the_function_monitor(
    tmp_path, seed, standin, runtime_for
) -> None:
    from warden.jobs.shards import shard_root

    seed(end=TRAINED, days=7, customer_rows=1500, seed=1, models=(SEG,))
    config = _config(tmp_path, monitor={"runner": "job", "tasks": 2})
    rt = runtime_for(config, monitor_job=_job(standin, "monitor", config))
    assert retrain(_request("train"), rt).version == 1
    seed(end=LATER, days=7, customer_rows=1500, seed=8, shift=1.0, models=(SEG,))

    single = monitor(_request("single", LATER), rt)
    request = _request("sharded", LATER)
    outcome = dispatch(request, rt, "monitor", monitor, actor="monitor_model")
    assert outcome.status == "dispatched"
    assert "2 tasks" in outcome.detail

    # Once the run's plan is pinned (a task is under way), kill task 0's attempt (its group).
    bucket = rt.clients.storage.bucket(rt.settings.registry_bucket)
    plan = f"{shard_root(SEG, request.key)}plan.json"
    wait_for(lambda: bucket.get_blob(plan), 60, "the run's plan", interval=0.01)
    running = [
        a
        for a in standin.local_execution(outcome.execution)["tasks"]
        if a["running"] and a["index"] == 0
    ]
    assert running, standin.local_execution(outcome.execution)
    os.killpg(running[0]["pid"], signal.SIGKILL)

    execution = standin.wait(outcome.execution, timeout=120)
    assert execution["succeededCount"] == 2
    assert execution.get("retriedCount") == 1  # the killed task ran again
    assert rt.ledger().marker(SEG, "monitor", request.key)["status"] == "done"
    results = sorted(
        b.name
        for b in rt.clients.storage.list_blobs(bucket.name, prefix=f"{SEG}/monitoring/")
        if b.name.endswith("/drift.json")
    )
    assert len(results) == 2  # the single run's and the job's: one merged result
    summaries = [json.loads(bucket.blob(name).download_as_bytes()) for name in results]
    job = next(s for s in summaries if s["request"]["key"] == "sharded")
    one = next(s for s in summaries if s["request"]["key"] == "single")
    assert one["drift"]["dataset_drift"] is True
    assert job["window"]["rows"] == 1500  # every row of the window, counted once
    assert job["drift"]["drifted"] == one["drift"]["drifted"]
    assert job["window"] == one["window"]
    for name, feature in one["drift"]["features"].items():
        for stat, value in feature["stats"].items():
            other = job["drift"]["features"][name]["stats"][stat]
            assert other == (value if value is None else pytest.approx(value, rel=1e-9))
    assert job["performance"]["current"] == pytest.approx(one["performance"]["current"])
    assert single.dataset_drift is True


def test_auto_sends_a_large_window_to_the_job_and_keeps_a_small_one_here(
    tmp_path, seed, runtime_for
) -> None:
    seed(end=TRAINED, days=7, customer_rows=1500, seed=1, models=(SEG,))
    small = _config(tmp_path, retrain={"runner": "auto", "max_bytes": 10_000_000})
    choice = choose(_request("a"), runtime_for(small), "retrain")
    assert choice.runner == "function"
    assert "within the limits" in choice.reason
    large = _config(tmp_path, retrain={"runner": "auto", "max_bytes": 1000})
    choice = choose(_request("b"), runtime_for(large), "retrain")
    assert choice.runner == "job"
    assert "max_bytes 1,000" in choice.reason


def test_auto_counts_the_rows_the_prediction_log_declares(tmp_path, runtime_for) -> None:
    from warden.serving.predlog import PredictionLog

    config = _config(
        tmp_path,
        monitor={"runner": "auto", "max_rows": 150, "max_bytes": 10**12},
    )
    raw = yaml.safe_load(config.read_text())
    raw["models"][SEG]["drift"]["source"] = "predictions"
    config.write_text(yaml.safe_dump(raw))
    rt = runtime_for(config)
    cfg = rt.config.model(SEG)
    log = PredictionLog(
        SEG, bucket=rt.clients.storage.bucket(rt.settings.data_bucket), flush_at_exit=False
    )
    row = {f: 1.0 for f in cfg.features}
    for i in range(100):
        log.log(row, {"cluster": 1}, version=1, request_id=f"r{i}")
    assert log.flush() == 100
    request = _request("p", date.today())
    assert choose(request, rt, "monitor").runner == "function"  # 100 rows ≤ 150
    for i in range(100):
        log.log(row, {"cluster": 1}, version=1, request_id=f"s{i}")
    assert log.flush() == 100
    choice = choose(request, rt, "monitor")
    assert choice.runner == "job"
    assert "200 rows > max_rows 150" in choice.reason


def test_a_job_runner_without_a_deployed_job_is_a_clear_permanent_error(
    tmp_path, runtime_for
) -> None:
    from warden.errors import ConfigError

    rt = runtime_for(_config(tmp_path, retrain={"runner": "job"}))
    with pytest.raises(ConfigError, match="WARDEN_RETRAIN_JOB is not set"):
        hand_off(_request("x"), rt, "retrain")


def test_a_missing_job_is_a_permanent_error_naming_it(tmp_path, standin, runtime_for) -> None:
    from warden.errors import ConfigError

    config = _config(tmp_path, retrain={"runner": "job"})
    rt = runtime_for(config, retrain_job=f"{standin.parent}/jobs/not-deployed")
    with pytest.raises(ConfigError, match="not-deployed"):
        hand_off(_request("y"), rt, "retrain")


# --- the entry command, run as the container runs it ----------------------------------------


def _task_env(bucket_names, config: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "WARDEN_PROJECT": PROJECT,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_ALERT_BUCKET": bucket_names["alerts"],
        "WARDEN_DATA_BUCKET": bucket_names["data"],
        "WARDEN_METRICS": "off",
        "WARDEN_CONFIG": str(config),
        "CLOUD_RUN_JOB": "warden-retrain",
        "CLOUD_RUN_EXECUTION": "warden-retrain-abcde",
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_COUNT": "1",
        "CLOUD_RUN_TASK_ATTEMPT": "0",
        **extra,
    }


def test_the_entry_command_runs_the_request_and_exits_by_the_error_kind(
    tmp_path, seed, bucket_names, make_runtime
) -> None:
    seed(end=TRAINED, days=7, customer_rows=1500, seed=1, models=(SEG,))
    config = _config(tmp_path)
    command = [sys.executable, *COMMAND[1:]]  # `python -m warden.jobs.task`, the ENTRYPOINT

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        env = _task_env(bucket_names, config, **extra)
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    done = run(WARDEN_JOB="retrain", WARDEN_RUN_REQUEST=_request("direct").to_json())
    assert done.returncode == 0, done.stderr[-2000:]
    rt = make_runtime(install=False)
    assert _versions(rt) == [1]
    # Unknown model: permanent, recorded nowhere to retry: exit 0 (no Cloud Run retry), ERROR.
    unknown = run(
        WARDEN_JOB="retrain", WARDEN_RUN_REQUEST=_request("u", model="no-such-model").to_json()
    )
    assert unknown.returncode == 0
    refused = [json.loads(line) for line in unknown.stdout.splitlines() if "refused" in line]
    assert [r["severity"] for r in refused] == ["ERROR"]
    assert "no-such-model" in refused[0]["message"]
    # No request in the environment: the job is misconfigured, exit 2.
    assert run(WARDEN_JOB="retrain").returncode == 2
    assert run(WARDEN_JOB="train", WARDEN_RUN_REQUEST="{}").returncode == 2


def test_warden_runs_shows_a_handed_on_request_with_its_execution() -> None:
    from warden.cli.runs import _row_text, run_row

    record = {
        "model": SEG,
        "kind": "monitor",
        "key": "k",
        "status": "dispatched",
        "execution": "projects/p/locations/l/jobs/warden-monitor/executions/warden-monitor-ab12c",
        "tasks": 4,
        "started_at": "2026-12-07T10:00:00+00:00",
    }
    text = _row_text(run_row(record, datetime.now(UTC)))
    assert "dispatched" in text
    assert text.endswith("→ Cloud Run job execution warden-monitor-ab12c (4 tasks)")
