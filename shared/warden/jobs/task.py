"""Entry point of Warden's Cloud Run jobs: ``python -m warden.jobs.task`` (the image's
ENTRYPOINT, :data:`COMMAND`).

One process is one task attempt of a job execution. The job says which use case it runs
(``WARDEN_JOB``: ``retrain`` or ``monitor``); the execution carries the request the triggering
function validated (``WARDEN_RUN_REQUEST``, from the run's overrides); Cloud Run says which task
and attempt this is (``CLOUD_RUN_*``, :class:`warden.settings.TaskContext`). The use cases are
the functions' own (:func:`warden.jobs.retrain.retrain`, :func:`warden.jobs.monitor.monitor`,
sharded by :mod:`warden.jobs.shards`), claimed in the run ledger under the request's key with the
owner ``EXECUTION/TASK_INDEX``: a retried attempt takes its own dead attempt's claim over at once
and carries on from its checkpoint (the version it claimed), so a request yields at most one
version or one monitor result however often Pub/Sub or Cloud Run repeat it.

Exit status, which is what Cloud Run retries on: 0 — done, a duplicate, or a permanent error (bad
data, an unknown model: logged at ERROR and recorded as the run's failure; a retry would fail
the same way); 1 — a retryable error (Cloud Run retries the task, up to the job's max retries);
2 — the task's environment is wrong (a deployment error; nothing was recorded).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from warden.errors import ConfigError, PermanentError
from warden.logs import fields

__all__ = ["COMMAND", "main"]

log = logging.getLogger("warden.jobs.task")

#: The job container's command (the Dockerfile's ENTRYPOINT, the local stack's jobs).
COMMAND = ("python", "-m", "warden.jobs.task")
#: warden.yaml in the task's working directory (the image's WORKDIR) unless WARDEN_CONFIG says.
DEFAULT_CONFIG = Path("warden.yaml")


def main(environ: Mapping[str, str] | None = None) -> int:
    from warden import runtime
    from warden.jobs.messages import RunRequest
    from warden.settings import TaskContext

    try:
        task = TaskContext.from_env(environ)
    except ConfigError as exc:
        logging.basicConfig(level=logging.INFO)
        log.error("job task misconfigured: %s", exc)
        return 2
    rt = runtime.current(default_config=DEFAULT_CONFIG)
    where = {
        "execution": task.execution,
        "task_index": task.index,
        "task_count": task.count,
        "task_attempt": task.attempt,
        "job": task.job,
    }
    try:
        request = RunRequest.from_json(task.request)
        cfg = rt.config.model(request.model)
        lease = timedelta(seconds=getattr(cfg.runners, task.job).timeout_s)
        outcome: Any
        if task.job == "retrain":
            from warden.jobs.retrain import retrain

            owner = f"{task.execution}/{task.index}"
            outcome = retrain(request, rt, actor="retrain_job", owner=owner, lease=lease)
        else:
            from warden.jobs.shards import monitor_task

            outcome = monitor_task(request, rt, task, lease=lease)
    except PermanentError as exc:
        log.error(
            "%s refused: %s",
            task.job,
            exc,
            extra=fields(error_type=type(exc).__name__, outcome="refused", **where),
        )
        return 0
    except Exception as exc:
        log.warning(
            "%s failed, Cloud Run retries the task: %s",
            task.job,
            exc,
            extra=fields(error_type=type(exc).__name__, outcome="retry", **where),
        )
        return 1
    log.info(
        "%s %s: %s",
        task.job,
        outcome.status,
        outcome.detail,
        extra=fields(model=outcome.model, version=outcome.version, outcome="ok", **where),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
