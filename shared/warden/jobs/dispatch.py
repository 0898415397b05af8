"""Where a run executes: in the triggering function, or handed to a Cloud Run job execution.

A model's ``runners`` (warden.yaml) say, per kind of run (``retrain``, ``monitor``):
``function`` — run here, as always; ``job`` — start an execution of the kind's Cloud Run job
(``WARDEN_RETRAIN_JOB`` / ``WARDEN_MONITOR_JOB``) with the validated request in its overrides
(``WARDEN_RUN_REQUEST``) and, for a monitor, ``tasks`` tasks; ``auto`` — a job when the window
is larger than ``max_bytes`` or ``max_rows``, measured from the listing alone (object sizes, and
the ``rows`` metadata the prediction log writes): nothing is downloaded to decide.

At least once, twice over: Pub/Sub may redeliver the request, and Cloud Run retries a failed
task. The function hands a request on once: a request whose run is finished is a duplicate, and
one handed on within the runner's ``timeout_s`` is not handed on again (a record beside the run
ledger's marker, ``MODEL/runs/KIND/<key digest>.dispatch.json``). Past that, the execution is
taken for lost and the request is handed on again. Two deliveries racing may each start an
execution: harmless, because the job's code claims the request in the run ledger like the
function does (at most one version per request; one merged result per sharded monitor run).

Imports: the foundation, :mod:`warden.config`, :mod:`warden.store` and
:mod:`warden.jobs.messages`; ``google.cloud.run_v2`` only when a run is handed on.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from warden.config import ModelConfig, RunnerSpec
from warden.errors import ConfigError, DataError, RetryableError
from warden.jobs.messages import RunRequest
from warden.logs import fields
from warden.runtime import Runtime

__all__ = ["KINDS", "DispatchOutcome", "choose", "dispatch", "hand_off"]

log = logging.getLogger(__name__)

Kind = Literal["retrain", "monitor"]
KINDS: tuple[Kind, ...] = ("retrain", "monitor")
#: The environment variable a job execution receives its request in (its run's overrides).
REQUEST_ENV = "WARDEN_RUN_REQUEST"


@dataclass
class DispatchOutcome:
    """A request handed to a job execution (``dispatched``), or found handed on or finished
    already (``duplicate``). Shaped like the use cases' outcomes for the entry point's log."""

    model: str
    status: str
    execution: str = ""
    version: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Choice:
    runner: Literal["function", "job"]
    reason: str


def choose(request: RunRequest, rt: Runtime, kind: Kind) -> Choice:
    """Function or job for this request, and why."""
    cfg = rt.config.model(request.model)
    spec: RunnerSpec = getattr(cfg.runners, kind)
    if spec.runner == "function":
        return Choice("function", "runners: function")
    if spec.runner == "job":
        return Choice("job", "runners: job")
    try:
        reader = _window(request, rt, cfg, kind)
    except DataError as exc:  # the run itself will say what is wrong with the window
        return Choice("function", f"auto: the window could not be measured ({exc})"[:300])
    size = sum(reader.sizes())
    rows, undeclared = reader.listed_rows()
    if size > spec.max_bytes:
        return Choice("job", f"auto: {size:,} bytes > max_bytes {spec.max_bytes:,}")
    if rows > spec.max_rows:
        return Choice("job", f"auto: {rows:,} rows > max_rows {spec.max_rows:,}")
    told = f"{rows:,} rows declared" + (f", {undeclared} file(s) undeclared" if undeclared else "")
    return Choice("function", f"auto: {size:,} bytes, {told}: within the limits")


def _window(request: RunRequest, rt: Runtime, cfg: ModelConfig, kind: Kind) -> Any:
    """The window the run would read, listed (not downloaded)."""
    from warden.store.data import WindowReader

    if kind == "monitor" and cfg.drift.source == "predictions":
        from warden.jobs.monitor import prediction_log_spec

        spec, bucket = prediction_log_spec(cfg), rt.settings.data_bucket
    else:
        spec, bucket = cfg.data, cfg.data_bucket(rt.settings.data_bucket)
    return WindowReader(
        rt.clients.storage,
        bucket=bucket,
        spec=spec,
        columns=list(cfg.features),
        as_of=request.as_of,
        window_days=cfg.drift.window_days if kind == "monitor" else spec.window_days,
        target_required=False,
    )


def dispatch(request: RunRequest, rt: Runtime, kind: Kind, run_here: Any, *, actor: str) -> Any:
    """Run ``request`` here (``run_here(request, rt)``) or hand it to the kind's job."""
    choice = choose(request, rt, kind)
    if choice.runner == "function":
        if choice.reason.startswith("auto"):
            log.info(
                "running in the function: %s", choice.reason, extra=fields(model=request.model)
            )
        return run_here(request, rt)
    return hand_off(request, rt, kind, reason=choice.reason, actor=actor)


def hand_off(
    request: RunRequest, rt: Runtime, kind: Kind, *, reason: str = "", actor: str = ""
) -> DispatchOutcome:
    """Start an execution of the kind's job for ``request`` unless it is finished or was handed
    on within the runner's timeout."""
    cfg = rt.config.model(request.model)
    spec: RunnerSpec = getattr(cfg.runners, kind)
    job = rt.settings.retrain_job if kind == "retrain" else rt.settings.monitor_job
    if not job:
        variable = "WARDEN_RETRAIN_JOB" if kind == "retrain" else "WARDEN_MONITOR_JOB"
        raise ConfigError(
            f"{cfg.name}: runners.{kind} sends this run to a Cloud Run job ({reason}), but "
            f"{variable} is not set: deploy the jobs (terraform/jobs.tf) or set runner: function"
        )
    ledger = rt.ledger()
    marker = ledger.marker(cfg.name, kind, request.key)
    if marker is not None and marker.get("status") in ("done", "failed"):
        return DispatchOutcome(cfg.name, "duplicate", detail=f"already {marker['status']}")
    earlier = ledger.dispatched(cfg.name, kind, request.key)
    generation = 0
    if earlier is not None:
        since = _parse(earlier.data.get("started_at"))
        if since is not None and rt.clock() - since < timedelta(seconds=spec.timeout_s):
            execution = str(earlier.data.get("execution", ""))
            return DispatchOutcome(
                cfg.name, "duplicate", execution, detail=f"already handed to {execution}"
            )
        generation = earlier.generation  # lost or timed out: hand it on again
        log.warning(
            "an earlier execution did not finish the run within %ds; starting another",
            spec.timeout_s,
            extra=fields(model=cfg.name, execution=earlier.data.get("execution"), key=request.key),
        )
    tasks = spec.tasks if kind == "monitor" else 1
    execution = _run_job(rt, job, request, tasks=tasks, timeout_s=spec.timeout_s)
    ledger.record_dispatch(
        cfg.name,
        kind,
        request.key,
        execution,
        generation=generation,
        detail={"tasks": tasks, "reason": reason, "actor": actor},
    )
    log.info(
        "%s handed to a Cloud Run job: %s",
        kind,
        execution,
        extra=fields(model=cfg.name, execution=execution, tasks=tasks, reason=reason),
    )
    return DispatchOutcome(
        cfg.name,
        "dispatched",
        execution,
        detail=f"execution {execution} ({tasks} task{'s' if tasks > 1 else ''}; {reason})",
    )


def _run_job(rt: Runtime, job: str, request: RunRequest, *, tasks: int, timeout_s: int) -> str:
    """``jobs.run`` with the request (and the task count) in the overrides; the execution's
    name. The function does not wait for it: the job records its outcome in the run ledger."""
    from google.api_core import exceptions
    from google.cloud import run_v2

    overrides = run_v2.RunJobRequest.Overrides(
        container_overrides=[
            run_v2.RunJobRequest.Overrides.ContainerOverride(
                env=[run_v2.EnvVar(name=REQUEST_ENV, value=request.to_json())]
            )
        ],
        task_count=tasks,
        timeout=timedelta(seconds=timeout_s),  # proto-plus marshals it to a Duration
    )
    try:
        operation = rt.clients.jobs.run_job(
            request=run_v2.RunJobRequest(name=job, overrides=overrides)
        )
    except (exceptions.NotFound, exceptions.PermissionDenied, exceptions.InvalidArgument) as exc:
        # The deployment, not this request, is wrong; redelivering would not mend it.
        raise ConfigError(f"{request.model}: could not start {job}: {exc}"[:2000]) from exc
    except exceptions.GoogleAPICallError as exc:
        raise RetryableError(f"{request.model}: could not start {job}: {exc}"[:2000]) from exc
    execution = getattr(operation.metadata, "name", "") or ""
    return str(execution) or f"{job} (execution name not reported)"


def _parse(text: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
