"""The local Cloud Run Admin API v2 stand-in (warden_local.cloudrun), driven through the real
``google-cloud-run`` client over REST; its JSON checked against Google's documented shapes."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.api_core.future import polling
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2

from stack_process import wait_for as poll_until
from warden_local.cloudrun import EXECUTION_TYPE, CloudRunStandIn
from warden_local.process import free_port
from warden_local.stack import PythonService

PROJECT = "warden-test"
LOCATION = "europe-west1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
T = TypeVar("T")

#: One script plays every task; MODE (from the job's or the run's env) picks its behaviour.
TASK_SCRIPT = r"""
import json, os, pathlib, sys, time
out = pathlib.Path(os.environ["OUT"])
index, attempt = os.environ["CLOUD_RUN_TASK_INDEX"], int(os.environ["CLOUD_RUN_TASK_ATTEMPT"])
seen = {k: v for k, v in os.environ.items() if k.startswith(("CLOUD_RUN_", "T_"))}
(out / f"env-{index}-{attempt}.json").write_text(json.dumps({"env": seen, "argv": sys.argv[1:]}))
mode = os.environ.get("MODE", "ok")
if mode == "fail-first" and attempt == 0:
    sys.exit(3)
if mode == "fail":
    sys.exit(4)
if mode == "hang" or (mode == "hang-first" and attempt == 0):
    marker = out / f"started-{index}-{attempt}"
    marker.with_suffix(".tmp").write_text(str(os.getpid()))
    marker.with_suffix(".tmp").rename(marker)  # whole: the test reads it once it exists
    while not (out / "never").exists():  # the test never creates it
        time.sleep(0.05)
if mode == "serial":
    with open(out / "order.log", "a") as f:
        f.write(f"start {index}\n")
    while not (out / f"go-{index}").exists():  # held until the test has looked around
        time.sleep(0.01)
    with open(out / "order.log", "a") as f:
        f.write(f"end {index}\n")
"""

#: Google's Execution resource, field by field (name → JSON type as documented), from
#: https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions#Execution
#: ("JSON representation"): int64 fields are strings, Timestamps RFC 3339 strings, counts integers.
EXECUTION_FIELDS: dict[str, type] = {
    "name": str,
    "uid": str,
    "generation": str,  # int64 format
    "labels": dict,
    "annotations": dict,
    "createTime": str,
    "startTime": str,
    "completionTime": str,
    "updateTime": str,
    "deleteTime": str,
    "expireTime": str,
    "launchStage": str,  # enum (LaunchStage)
    "job": str,
    "parallelism": int,
    "taskCount": int,
    "template": dict,  # object (TaskTemplate)
    "reconciling": bool,
    "conditions": list,  # object (Condition)
    "observedGeneration": str,  # int64 format
    "runningCount": int,
    "succeededCount": int,
    "failedCount": int,
    "cancelledCount": int,
    "retriedCount": int,
    "logUri": str,
    "satisfiesPzs": bool,
    "etag": str,
}
TIMESTAMP_FIELDS = ("createTime", "startTime", "completionTime", "updateTime")
#: Condition (type, state, message, lastTransitionTime, severity and one of reason /
#: revisionReason / executionReason), as the client reference documents it:
#: https://cloud.google.com/ruby/docs/reference/google-cloud-run-v2/0.21.0/Google-Cloud-Run-V2-Condition
CONDITION_FIELDS = {
    "type",
    "state",
    "message",
    "lastTransitionTime",
    "severity",
    "reason",
    "revisionReason",
    "executionReason",
}
CONDITION_STATES = {
    "STATE_UNSPECIFIED",
    "CONDITION_PENDING",
    "CONDITION_RECONCILING",
    "CONDITION_FAILED",
    "CONDITION_SUCCEEDED",
}
#: TaskTemplate (the Execution's ``template``), from the Job resource's page:
#: https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs#TaskTemplate
TASK_TEMPLATE_FIELDS = {
    "containers",
    "volumes",
    "maxRetries",
    "timeout",
    "serviceAccount",
    "executionEnvironment",
    "encryptionKey",
    "vpcAccess",
    "nodeSelector",
    "gpuZonalRedundancyDisabled",
}
#: Operation, from https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.operations
#: (name, metadata {"@type", ...}, done, and the union result: error (Status) or response).
OPERATION_FIELDS = {"name", "metadata", "done", "error", "response"}
#: RFC 3339 UTC "Zulu", up to nine fractional digits (the Timestamp format the pages give).
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def wait_for(predicate: Callable[[], T | None], *, timeout: float = 10.0, what: str = "it") -> T:
    """The suite's condition wait (stack_process), polled fast: these tasks live milliseconds."""
    return poll_until(predicate, timeout, what, interval=0.02)  # type: ignore[return-value]


#: Fast polling for Operation.result(): the client's default first waits a whole second.
FAST = polling.DEFAULT_POLLING.with_delay(initial=0.02, maximum=0.1, multiplier=1.5).with_timeout(
    15
)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudRunStandIn]:
    with CloudRunStandIn(
        project=PROJECT,
        location=LOCATION,
        log_dir=tmp_path_factory.mktemp("cloudrun-logs"),
        env={**os.environ, "T_BASE": "base"},
    ) as server:
        yield server


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cloudrun-script") / "task.py"
    path.write_text(TASK_SCRIPT)
    return path


def _options(standin: CloudRunStandIn) -> ClientOptions:
    return ClientOptions(api_endpoint=standin.url)


@pytest.fixture(scope="module")
def jobs(standin: CloudRunStandIn) -> run_v2.JobsClient:
    # The REST transport keeps an endpoint's own http:// scheme (no url_scheme needed).
    return run_v2.JobsClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=_options(standin)
    )


@pytest.fixture(scope="module")
def executions(standin: CloudRunStandIn) -> run_v2.ExecutionsClient:
    return run_v2.ExecutionsClient(
        credentials=AnonymousCredentials(), transport="rest", client_options=_options(standin)
    )


_counter = iter(range(10_000))


def make_job(
    jobs: run_v2.JobsClient,
    script: Path,
    out: Path,
    *,
    mode: str = "ok",
    task_count: int = 1,
    parallelism: int = 0,
    max_retries: int | None = None,
    timeout: str | None = None,
    args: list[str] | None = None,
) -> str:
    """Create a job running ``script`` with MODE ``mode`` and OUT ``out``; its id."""
    job_id = f"job-{next(_counter)}"
    task = run_v2.TaskTemplate(
        containers=[
            run_v2.Container(
                image="europe-docker.pkg.dev/warden/jobs/task:local",
                command=[sys.executable, str(script)],
                args=args or [],
                env=[
                    run_v2.EnvVar(name="OUT", value=str(out)),
                    run_v2.EnvVar(name="MODE", value=mode),
                    run_v2.EnvVar(name="T_JOB", value="job"),
                    run_v2.EnvVar(name="T_REPLACED", value="by-job"),
                ],
            )
        ]
    )
    if max_retries is not None:
        task.max_retries = max_retries
    if timeout is not None:
        task.timeout = timeout
    job = run_v2.Job(
        template=run_v2.ExecutionTemplate(
            task_count=task_count, parallelism=parallelism, template=task
        )
    )
    created = jobs.create_job(parent=PARENT, job=job, job_id=job_id).result(timeout=5)
    assert created.name == f"{PARENT}/jobs/{job_id}"
    return job_id


def finished(executions: run_v2.ExecutionsClient, name: str) -> run_v2.Execution:
    def done() -> run_v2.Execution | None:
        execution = executions.get_execution(name=name)
        return execution if execution.completion_time else None

    return wait_for(done, what=f"{name} to finish")


def seen(out: Path, index: int, attempt: int) -> dict[str, Any]:
    return json.loads((out / f"env-{index}-{attempt}.json").read_text())


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# -- running, through the real client -------------------------------------------------------------
def test_run_with_overrides_gives_each_task_cloud_runs_environment(
    standin: CloudRunStandIn,
    jobs: run_v2.JobsClient,
    executions: run_v2.ExecutionsClient,
    script: Path,
    tmp_path: Path,
) -> None:
    job_id = make_job(jobs, script, tmp_path, args=["--from-job"])
    overrides = run_v2.RunJobRequest.Overrides(
        container_overrides=[
            run_v2.RunJobRequest.Overrides.ContainerOverride(
                env=[
                    run_v2.EnvVar(name="T_RUN", value="run"),
                    run_v2.EnvVar(name="T_REPLACED", value="by-run"),
                ],
                args=["--from-run", "x"],
            )
        ],
        task_count=3,
    )
    operation = jobs.run_job(
        request=run_v2.RunJobRequest(name=f"{PARENT}/jobs/{job_id}", overrides=overrides)
    )
    name = operation.metadata.name
    assert isinstance(operation.metadata, run_v2.Execution)
    assert re.fullmatch(rf"{PARENT}/jobs/{job_id}/executions/{job_id}-[a-z0-9]{{5}}", name)
    assert operation.operation.name.startswith(f"{PARENT}/operations/")

    execution = finished(executions, name)
    assert execution.succeeded_count == 3
    assert (execution.task_count, execution.failed_count, execution.retried_count) == (3, 0, 0)
    completed = next(c for c in execution.conditions if c.type_ == "Completed")
    assert completed.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert execution.job == job_id

    execution_id = name.rsplit("/", 1)[1]
    for index in range(3):
        task = seen(tmp_path, index, 0)
        assert task["env"] == {
            "CLOUD_RUN_JOB": job_id,
            "CLOUD_RUN_EXECUTION": execution_id,
            "CLOUD_RUN_TASK_INDEX": str(index),
            "CLOUD_RUN_TASK_COUNT": "3",
            "CLOUD_RUN_TASK_ATTEMPT": "0",
            "T_BASE": "base",  # the stand-in's base environment
            "T_JOB": "job",  # the job's container env
            "T_RUN": "run",  # the run's override env, merged by name
            "T_REPLACED": "by-run",
        }
        assert task["argv"] == ["--from-run", "x"]  # override args replace the job's

    # The operation ends done, with the finished Execution as its response.
    result = operation.result(polling=FAST)
    assert result.name == name
    assert result.succeeded_count == 3
    listed = [e.name for e in executions.list_executions(parent=f"{PARENT}/jobs/{job_id}")]
    assert listed == [name]
    job = jobs.get_job(name=f"{PARENT}/jobs/{job_id}")
    assert job.execution_count == 1
    assert job.latest_created_execution.name == execution_id
    assert (
        job.latest_created_execution.completion_status
        == run_v2.ExecutionReference.CompletionStatus.EXECUTION_SUCCEEDED
    )
    assert job.template.template.max_retries == 3  # Cloud Run's default
    assert job.template.template.timeout.total_seconds() == 600


def test_clear_args_runs_the_command_alone(
    jobs: run_v2.JobsClient, executions: run_v2.ExecutionsClient, script: Path, tmp_path: Path
) -> None:
    job_id = make_job(jobs, script, tmp_path, args=["--from-job"])
    overrides = run_v2.RunJobRequest.Overrides(
        container_overrides=[run_v2.RunJobRequest.Overrides.ContainerOverride(clear_args=True)]
    )
    operation = jobs.run_job(
        request=run_v2.RunJobRequest(name=f"{PARENT}/jobs/{job_id}", overrides=overrides)
    )
    assert finished(executions, operation.metadata.name).succeeded_count == 1
    assert seen(tmp_path, 0, 0)["argv"] == []


def test_a_task_that_fails_once_is_retried_and_the_execution_succeeds(
    standin: CloudRunStandIn,
    jobs: run_v2.JobsClient,
    executions: run_v2.ExecutionsClient,
    script: Path,
    tmp_path: Path,
) -> None:
    job_id = make_job(jobs, script, tmp_path, mode="fail-first", task_count=2)
    operation = jobs.run_job(name=f"{PARENT}/jobs/{job_id}")
    execution = finished(executions, operation.metadata.name)
    assert (execution.succeeded_count, execution.failed_count) == (2, 0)
    assert execution.retried_count == 2  # tasks retried at least once, not retries
    for index in range(2):
        assert seen(tmp_path, index, 1)["env"]["CLOUD_RUN_TASK_ATTEMPT"] == "1"
    execution_id = operation.metadata.name.rsplit("/", 1)[1]
    logs = sorted(p.name for p in standin.log_dir.glob(f"{execution_id}-*"))
    assert logs == [
        f"{execution_id}-task0-attempt0.log",
        f"{execution_id}-task0-attempt1.log",
        f"{execution_id}-task1-attempt0.log",
        f"{execution_id}-task1-attempt1.log",
    ]


def test_a_task_failing_past_its_retries_fails_the_execution_and_its_operation(
    jobs: run_v2.JobsClient, executions: run_v2.ExecutionsClient, script: Path, tmp_path: Path
) -> None:
    job_id = make_job(jobs, script, tmp_path, mode="fail", max_retries=1)
    operation = jobs.run_job(name=f"{PARENT}/jobs/{job_id}")
    execution = finished(executions, operation.metadata.name)
    assert (execution.succeeded_count, execution.failed_count, execution.retried_count) == (0, 1, 1)
    assert sorted(p.name for p in tmp_path.glob("env-*")) == ["env-0-0.json", "env-0-1.json"]
    completed = next(c for c in execution.conditions if c.type_ == "Completed")
    assert completed.state == run_v2.Condition.State.CONDITION_FAILED
    assert completed.execution_reason == run_v2.Condition.ExecutionReason.NON_ZERO_EXIT_CODE
    with pytest.raises(gexc.GoogleAPICallError, match="task0 failed"):
        operation.result(polling=FAST)
    job = jobs.get_job(name=f"{PARENT}/jobs/{job_id}")
    status = job.latest_created_execution.completion_status
    assert status == run_v2.ExecutionReference.CompletionStatus.EXECUTION_FAILED


def test_max_retries_zero_means_one_attempt(
    jobs: run_v2.JobsClient, executions: run_v2.ExecutionsClient, script: Path, tmp_path: Path
) -> None:
    job_id = make_job(jobs, script, tmp_path, mode="fail", max_retries=0)
    assert jobs.get_job(name=f"{PARENT}/jobs/{job_id}").template.template.max_retries == 0
    operation = jobs.run_job(name=f"{PARENT}/jobs/{job_id}")
    execution = finished(executions, operation.metadata.name)
    assert (execution.failed_count, execution.retried_count) == (1, 0)
    assert [p.name for p in tmp_path.glob("env-*")] == ["env-0-0.json"]


def test_a_task_killed_while_running_is_retried(
    standin: CloudRunStandIn,
    jobs: run_v2.JobsClient,
    executions: run_v2.ExecutionsClient,
    script: Path,
    tmp_path: Path,
) -> None:
    job_id = make_job(jobs, script, tmp_path, mode="hang-first")
    operation = jobs.run_job(name=f"{PARENT}/jobs/{job_id}")
    name = operation.metadata.name
    marker = tmp_path / "started-0-0"
    wait_for(marker.exists, what="the first attempt to start")
    pid = int(marker.read_text())
    assert [p.pid for p in standin.task_processes(name)] == [pid]
    status, local = get_json(f"{standin.url}/_local/executions/{name.rsplit('/', 1)[1]}")
    assert status == 200
    assert [(t["index"], t["attempt"], t["pid"], t["running"]) for t in local["tasks"]] == [
        (0, 0, pid, True)
    ]
    running = executions.get_execution(name=name)
    assert running.running_count == 1
    assert running.reconciling

    os.kill(pid, signal.SIGKILL)
    execution = standin.wait(name, timeout=10)
    assert (execution["succeededCount"], execution["retriedCount"]) == (1, 1)
    assert seen(tmp_path, 0, 1)["env"]["CLOUD_RUN_TASK_ATTEMPT"] == "1"
    assert standin.task_processes(name) == []


def test_a_task_past_its_timeout_is_killed_and_fails(
    standin: CloudRunStandIn,
    jobs: run_v2.JobsClient,
    executions: run_v2.ExecutionsClient,
    script: Path,
    tmp_path: Path,
) -> None:
    job_id = make_job(jobs, script, tmp_path, mode="hang", max_retries=0)
    # The run's timeout overrides the job's (600 s), as warden.jobs.dispatch sets it.
    overrides = run_v2.RunJobRequest.Overrides(timeout=timedelta(seconds=0.5))
    operation = jobs.run_job(
        request=run_v2.RunJobRequest(name=f"{PARENT}/jobs/{job_id}", overrides=overrides)
    )
    execution = finished(executions, operation.metadata.name)
    assert execution.failed_count == 1
    completed = next(c for c in execution.conditions if c.type_ == "Completed")
    assert "timeout" in completed.message
    pid = int((tmp_path / "started-0-0").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: the stand-in waited for it


def test_parallelism_one_runs_tasks_one_at_a_time(
    standin: CloudRunStandIn,
    jobs: run_v2.JobsClient,
    executions: run_v2.ExecutionsClient,
    script: Path,
    tmp_path: Path,
) -> None:
    job_id = make_job(jobs, script, tmp_path, mode="serial", task_count=3, parallelism=1)
    operation = jobs.run_job(name=f"{PARENT}/jobs/{job_id}")
    name = operation.metadata.name
    log = tmp_path / "order.log"
    for started in range(1, 4):
        # Each task holds until released: while one runs, it is the only task process there is
        # (all three would have been started at once were parallelism not honoured).
        lines = wait_for(
            lambda n=started: (lambda got: got if len(got) == n else None)(
                [x for x in (log.read_text().splitlines() if log.exists() else []) if "start" in x]
            ),
            what=f"task start {started}",
        )
        assert len(standin.task_processes(name)) == 1
        (tmp_path / f"go-{lines[-1].split()[1]}").write_text("")
    assert finished(executions, name).succeeded_count == 3
    lines = (tmp_path / "order.log").read_text().splitlines()
    assert len(lines) == 6
    for start, end in zip(lines[::2], lines[1::2], strict=True):
        assert start.split()[0] == "start"
        assert end == f"end {start.split()[1]}"  # each task ended before the next began
    assert sorted(line for line in lines if line.startswith("start")) == [
        "start 0",
        "start 1",
        "start 2",
    ]


def test_cancel_stops_the_tasks(
    standin: CloudRunStandIn,
    jobs: run_v2.JobsClient,
    executions: run_v2.ExecutionsClient,
    script: Path,
    tmp_path: Path,
) -> None:
    job_id = make_job(jobs, script, tmp_path, mode="hang", task_count=2)
    operation = jobs.run_job(name=f"{PARENT}/jobs/{job_id}")
    name = operation.metadata.name
    wait_for(lambda: len(standin.task_processes(name)) == 2, what="both tasks to start")
    cancelled = executions.cancel_execution(name=name).result(polling=FAST)
    assert cancelled.cancelled_count == 2
    assert standin.task_processes(name) == []
    with pytest.raises(gexc.GoogleAPICallError):
        operation.result(polling=FAST)


# -- errors ---------------------------------------------------------------------------------------
def test_an_unknown_job_is_not_found(
    standin: CloudRunStandIn, jobs: run_v2.JobsClient, executions: run_v2.ExecutionsClient
) -> None:
    with pytest.raises(gexc.NotFound):
        jobs.run_job(name=f"{PARENT}/jobs/no-such-job")
    with pytest.raises(gexc.NotFound):
        jobs.get_job(name=f"{PARENT}/jobs/no-such-job")
    with pytest.raises(gexc.NotFound):
        executions.get_execution(name=f"{PARENT}/jobs/no-such-job/executions/no-such-job-abcde")
    with pytest.raises(gexc.NotFound):
        jobs.get_job(name=f"projects/other/locations/{LOCATION}/jobs/x")
    # Google's error body: https://cloud.google.com/apis/design/errors#http_mapping
    status, body = get_json(f"{standin.url}/v2/{PARENT}/jobs/no-such-job")
    assert status == 404
    assert set(body) == {"error"}
    assert body["error"]["code"] == 404
    assert body["error"]["status"] == "NOT_FOUND"
    assert isinstance(body["error"]["message"], str)


def test_create_rejects_what_google_rejects(jobs: run_v2.JobsClient) -> None:
    no_image = run_v2.Job(
        template=run_v2.ExecutionTemplate(
            template=run_v2.TaskTemplate(containers=[run_v2.Container(command=["true"])])
        )
    )
    with pytest.raises(gexc.BadRequest):
        jobs.create_job(parent=PARENT, job=no_image, job_id="no-image")
    with pytest.raises(gexc.BadRequest):
        make_job_with_id(jobs, "Not_A_Job_Id")
    make_job_with_id(jobs, "taken")
    with pytest.raises(gexc.Conflict):
        make_job_with_id(jobs, "taken")


def make_job_with_id(jobs: run_v2.JobsClient, job_id: str) -> None:
    job = run_v2.Job(
        template=run_v2.ExecutionTemplate(
            template=run_v2.TaskTemplate(containers=[run_v2.Container(image="i", command=["x"])])
        )
    )
    jobs.create_job(parent=PARENT, job=job, job_id=job_id).result(timeout=5)


# -- the JSON, against Google's documented shapes -------------------------------------------------
def test_execution_and_operation_json_have_googles_documented_shape(
    standin: CloudRunStandIn, jobs: run_v2.JobsClient, script: Path, tmp_path: Path
) -> None:
    job_id = make_job(jobs, script, tmp_path, task_count=2)
    operation = jobs.run_job(name=f"{PARENT}/jobs/{job_id}")
    name = operation.metadata.name
    standin.wait(name, timeout=10)

    # Raw HTTP without $alt=json;enum-encoding=int: enums by name, as the REST docs show them.
    status, execution = get_json(f"{standin.url}/v2/{name}")
    assert status == 200
    assert set(execution) <= set(EXECUTION_FIELDS), set(execution) - set(EXECUTION_FIELDS)
    for key, value in execution.items():
        assert isinstance(value, EXECUTION_FIELDS[key]), (key, value)
    for key in TIMESTAMP_FIELDS:
        assert RFC3339.fullmatch(execution[key]), (key, execution[key])
    assert execution["name"] == name
    assert re.fullmatch(r"[0-9a-f-]{36}", execution["uid"])
    assert execution["job"] == job_id
    assert execution["launchStage"] == "GA"
    assert (execution["taskCount"], execution["succeededCount"]) == (2, 2)
    # Counts at zero are left out, as proto3 JSON leaves default values out.
    assert "failedCount" not in execution
    assert "retriedCount" not in execution
    assert set(execution["template"]) <= TASK_TEMPLATE_FIELDS
    assert execution["template"]["timeout"] == "600s"
    for condition in execution["conditions"]:
        assert set(condition) <= CONDITION_FIELDS
        assert condition["state"] in CONDITION_STATES
        assert RFC3339.fullmatch(condition["lastTransitionTime"])
    completed = [c for c in execution["conditions"] if c["type"] == "Completed"]
    assert [c["state"] for c in completed] == ["CONDITION_SUCCEEDED"]

    operation_id = operation.operation.name.rsplit("/", 1)[1]
    status, op = get_json(f"{standin.url}/v2/{PARENT}/operations/{operation_id}")
    assert status == 200
    assert set(op) <= OPERATION_FIELDS
    assert op["name"] == f"{PARENT}/operations/{operation_id}"
    assert op["done"] is True
    assert "error" not in op
    assert op["metadata"]["@type"] == EXECUTION_TYPE
    assert op["response"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Execution"
    assert op["response"]["name"] == name

    # With enum-encoding=int (what the client asks), the same enums come as numbers.
    _, numbered = get_json(f"{standin.url}/v2/{name}?%24alt=json%3Benum-encoding%3Dint")
    assert numbered["launchStage"] == 4  # google.api.LaunchStage.GA
    assert {c["state"] for c in numbered["conditions"]} == {4}  # CONDITION_SUCCEEDED


# -- lifecycle ------------------------------------------------------------------------------------
def test_stop_stops_every_task(script: Path, tmp_path: Path) -> None:
    standin = CloudRunStandIn(project=PROJECT, location=LOCATION, log_dir=tmp_path / "logs")
    with standin:
        client = run_v2.JobsClient(
            credentials=AnonymousCredentials(), transport="rest", client_options=_options(standin)
        )
        job_id = make_job(client, script, tmp_path, mode="hang", task_count=2)
        name = client.run_job(name=f"{PARENT}/jobs/{job_id}").metadata.name
        wait_for(lambda: len(standin.task_processes(name)) == 2, what="both tasks to start")
        procs = standin.task_processes(name)
    assert all(proc.poll() is not None for proc in procs)
    execution = standin.get_execution(name)
    assert execution["cancelledCount"] == 2


def _dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie no one has reaped yet


def test_as_a_child_process_it_serves_the_local_endpoint_and_stops_its_tasks(
    script: Path, tmp_path: Path
) -> None:
    port = free_port()
    service = PythonService(
        "cloudrun",
        [
            "-m",
            "warden_local.cloudrun",
            "--port",
            str(port),
            "--project",
            PROJECT,
            "--location",
            LOCATION,
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        port=port,
        log=None,
        env={**os.environ, "T_BASE": "child"},
    )
    with service:
        url = f"http://127.0.0.1:{port}"
        client = run_v2.JobsClient(
            credentials=AnonymousCredentials(),
            transport="rest",
            client_options=ClientOptions(api_endpoint=url),
        )
        job_id = make_job(client, script, tmp_path, mode="hang")
        name = client.run_job(name=f"{PARENT}/jobs/{job_id}").metadata.name
        wait_for((tmp_path / "started-0-0").exists, what="the task to start")
        assert seen(tmp_path, 0, 0)["env"]["T_BASE"] == "child"
        _, local = get_json(f"{url}/_local/executions/{name.rsplit('/', 1)[1]}")
        pid = local["tasks"][0]["pid"]
        assert pid == int((tmp_path / "started-0-0").read_text())
    # SIGTERM to the stand-in's group does not reach the task's own session: the stand-in
    # stops it itself.
    wait_for(lambda: _dead(pid), timeout=10, what="the task to be stopped")
