"""``warden runs`` and ``warden monitor``, and following a requested run to its end (``--wait``).

A run is what the run ledger (:mod:`warden.store.runs`) records per request: one marker under
``MODEL/runs/KIND/``. A command that publishes a request (``retrain``, ``monitor``) knows the
request's key before any function sees it — the key of a manual request is derived from the
Pub/Sub message id, by the same :func:`~warden.jobs.messages.parse_run_request` the function
runs — so ``--wait`` polls that one marker until it is ``done`` or ``failed``.

Exit codes beyond :mod:`warden.cli.common`'s: :data:`EXIT_RUN_FAILED` (the run failed; its error
is printed) and :data:`EXIT_WAIT_TIMEOUT` (``--timeout`` passed before the run ended).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from warden.cli.common import configured, emit, handled
from warden.errors import ConfigError

__all__ = [
    "EXIT_RUN_FAILED",
    "EXIT_WAIT_TIMEOUT",
    "check_as_of",
    "finish_wait",
    "follow_run",
    "monitor_cmd",
    "publish_request",
    "request_topic",
    "run_row",
    "runs",
    "wait_options",
]

#: ``--wait``: the run ended ``failed`` (a permanent error; the error text is on stderr).
EXIT_RUN_FAILED = 7
#: ``--wait``: ``--timeout`` passed while the request was still queued or running.
EXIT_WAIT_TIMEOUT = 8

KINDS = ("retrain", "monitor", "housekeeping")
DEFAULT_TIMEOUT = 1800.0
#: The longest pause between two reads of the marker while waiting (it starts at 0.5 s).
POLL_MAX = 5.0


# -- requests -------------------------------------------------------------------------------------


def request_topic(settings: Any, kind: str) -> str:
    """The topic id of ``kind``'s requests in this deployment. The retrain topic is configured
    (``WARDEN_RETRAIN_TOPIC``); the others share its prefix, as Terraform names them
    (``PREFIX-retrain-requests`` → ``PREFIX-monitor-requests``)."""
    from warden.config.schedules import TOPICS

    if kind == "retrain":
        return str(settings.retrain_topic)
    base = TOPICS["retrain"]
    configured_topic = str(settings.retrain_topic)
    if not configured_topic.endswith(base):
        raise ConfigError(
            f"cannot tell the {kind} topic from WARDEN_RETRAIN_TOPIC={configured_topic!r} "
            f"(it does not end in {base!r}); pass --topic"
        )
    return configured_topic.removesuffix(base) + TOPICS[kind]


def check_as_of(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--as-of``: a YYYY-MM-DD date, checked before anything is published."""
    from datetime import date

    if value is not None:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise click.BadParameter(f"not a YYYY-MM-DD date: {value!r}") from None
    return value


def publish_request(
    rt: Any, kind: str, model: str, payload: dict[str, Any], *, topic_id: str | None = None
) -> dict[str, Any]:
    """Publish one run request; return message id, topic, payload and the run's ledger key."""
    from warden.jobs.messages import PubSubMessage, parse_run_request

    topic_id = topic_id or request_topic(rt.settings, kind)
    publisher = rt.clients.publisher
    topic = publisher.topic_path(rt.settings.project, topic_id)
    data = json.dumps(payload).encode()
    attributes = {"model": model, "kind": kind}
    message_id = str(publisher.publish(topic, data, **attributes).result(timeout=30))
    # The key the function will derive from this message: the same parser, on the same message.
    delivered = PubSubMessage(
        data=data, attributes=attributes, message_id=message_id, publish_time=None
    )
    key = parse_run_request(delivered, rt.config, job=kind).key
    return {"message_id": message_id, "topic": topic, "payload": payload, "key": key}


# -- reading runs ---------------------------------------------------------------------------------


def _parse(ts: Any) -> datetime | None:
    if not isinstance(ts, str) or not ts:
        return None
    try:
        at = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_row(record: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One marker as a row: status, times, duration (elapsed so far while running), the version
    it made or watched, and the error of a failed run."""
    result: dict[str, Any] = record.get("result") or {}
    progress: dict[str, Any] = record.get("progress") or {}
    if not isinstance(result, dict) or not isinstance(progress, dict):
        result, progress = {}, {}
    status = str(record.get("status", "?"))
    started, finished = _parse(record.get("started_at")), _parse(record.get("finished_at"))
    duration = None
    if started and finished:
        duration = max((finished - started).total_seconds(), 0.0)
    elif started and status == "running":
        duration = max((now - started).total_seconds(), 0.0)
    lease = _parse(record.get("lease_until"))
    row = {
        "kind": record.get("kind"),
        "status": status,
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "duration_s": None if duration is None else round(duration, 3),
        "version": result.get("version", progress.get("version")),
        "promoted": result.get("promoted"),  # retrain
        "drift": result.get("drift"),  # monitor: dataset drift, performance degraded
        "degraded": result.get("degraded"),
        "error": result.get("error") if status == "failed" else None,
        "error_type": result.get("error_type") if status == "failed" else None,
        "run_id": record.get("run_id"),
        "attempt": record.get("attempt"),
        "key": record.get("key"),
        # Handed to a Cloud Run job (warden.jobs.dispatch): the execution, and its tasks.
        "execution": record.get("execution"),
        "tasks": record.get("tasks"),
        # Running past its lease: the instance died; the next delivery takes it over.
        "stalled": bool(status == "running" and lease is not None and lease < now),
    }
    return row


def _row_text(r: dict[str, Any]) -> str:
    version = f"v{r['version']}" if r.get("version") is not None else "-"
    status = "stalled" if r["stalled"] else r["status"]
    duration = _duration(r["duration_s"])
    if r["status"] == "running":
        duration += "…"
    if r["status"] == "failed":
        error = " ".join(str(r.get("error") or "").split())
        detail = f"{r.get('error_type') or 'error'}: {error[:160]}"
    elif r["status"] == "done" and r.get("promoted") is not None:
        detail = "promoted" if r["promoted"] else "not promoted"
    elif r["status"] == "dispatched":
        tasks = r.get("tasks") or 1
        execution = str(r.get("execution") or "").rsplit("/", 1)[-1]
        detail = f"→ Cloud Run job execution {execution} ({tasks} task{'s' * (tasks > 1)})"
    elif r["status"] == "done" and r.get("drift") is not None:
        detail = ", ".join(
            [("drift" if r["drift"] else "no drift")] + (["degraded"] if r.get("degraded") else [])
        )
    else:
        detail = ""
    return (
        f"{r['started_at'] or '-':<27} {r['kind'] or '-':<12} {status:<8} {duration:>9} "
        f"{version:<6} {detail}"
    ).rstrip()


@click.command("runs")
@click.argument("model")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="Only this job's runs.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.pass_context
@handled
def runs(ctx: click.Context, model: str, kind: str | None, limit: int) -> None:
    """Recent runs of MODEL (retrain, monitor, housekeeping), newest first: status, duration,
    version, and the error of a failed one. Markers expire with housekeeping (30 days)."""
    rt = configured(ctx, model)
    now = rt.clock()
    rows = [run_row(r, now) for r in rt.ledger().recent(model, kind=kind, limit=limit)]
    emit(ctx, rows, "\n".join(_row_text(r) for r in rows) or f"{model}: no runs recorded")


# -- following one run ----------------------------------------------------------------------------


def _progress_text(record: dict[str, Any] | None, kind: str) -> str:
    if record is None:
        return f"queued: waiting for the {kind} function to take the request"
    status = record.get("status")
    if status == "running":
        return (
            f"running: run {record.get('run_id')}, attempt {record.get('attempt', 1)}, "
            f"since {record.get('started_at')}"
        )
    if status == "aborted":
        return "aborted by a transient error: waiting for Pub/Sub to deliver it again"
    return str(status)


def follow_run(
    rt: Any,
    model: str,
    kind: str,
    key: str,
    *,
    timeout: float,
    say: Callable[[str], None],
    poll_max: float = POLL_MAX,
) -> dict[str, Any] | None:
    """Poll the marker of ``key`` until it is ``done`` or ``failed`` or ``timeout`` seconds
    passed, saying each change of state. The last marker read (None: never claimed)."""
    from warden.store.runs import FINAL

    ledger = rt.ledger()
    deadline = time.monotonic() + max(timeout, 0.0)
    delay = 0.5
    said = None
    while True:
        record = ledger.marker(model, kind, key)
        text = _progress_text(record, kind)
        if text != said:
            say(text)
            said = text
        if record is not None and record.get("status") in FINAL:
            return record
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return record
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, poll_max)


def finish_wait(
    ctx: click.Context,
    rt: Any,
    request: dict[str, Any],
    model: str,
    kind: str,
    *,
    timeout: float,
) -> None:
    """``--wait``: follow the request's run; emit the outcome; exit 0 on ``done``,
    :data:`EXIT_RUN_FAILED` on ``failed``, :data:`EXIT_WAIT_TIMEOUT` when time ran out."""

    def say(text: str) -> None:
        click.echo(f"  … {kind} {model}: {text}", err=True)

    record = follow_run(rt, model, kind, request["key"], timeout=timeout, say=say)
    row = None if record is None else run_row(record, rt.clock())
    data = {**request, "run": row}
    if row is None or row["status"] not in ("done", "failed"):
        emit(ctx, data, f"{model}: {kind} not finished after {timeout:g}s")
        state = "still queued" if row is None else f"still {row['status']}"
        click.echo(
            f"error: gave up waiting after {timeout:g}s; the {kind} is {state}. "
            f"Follow it with: warden runs {model} --kind {kind}",
            err=True,
        )
        sys.exit(EXIT_WAIT_TIMEOUT)
    version = f", v{row['version']}" if row.get("version") is not None else ""
    if row["status"] == "failed":
        emit(ctx, data, f"{model}: {kind} failed after {_duration(row['duration_s'])}")
        click.echo(
            f"error: {kind} of {model} failed ({row.get('error_type') or 'error'}): "
            f"{row.get('error') or 'no error text recorded'}",
            err=True,
        )
        sys.exit(EXIT_RUN_FAILED)
    promoted = ""
    if row.get("promoted") is not None:
        promoted = ", promoted" if row["promoted"] else ", not promoted"
    emit(ctx, data, f"{model}: {kind} done in {_duration(row['duration_s'])}{version}{promoted}")


def wait_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--wait`` and ``--timeout``, shared by the commands that publish a run request."""
    fn = click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="With --wait: seconds to wait before giving up (exit 8).",
    )(fn)
    return click.option(
        "--wait",
        is_flag=True,
        help="Follow the run to its end: exit 0 done, 7 failed (error printed), 8 timed out.",
    )(fn)


@click.command("monitor")
@click.argument("model")
@click.option(
    "--as-of",
    default=None,
    callback=check_as_of,
    help="Last day of the recent-data window (YYYY-MM-DD).",
)
@click.option(
    "--topic",
    default=None,
    help="Monitor request topic id (default: WARDEN_RETRAIN_TOPIC's prefix + monitor-requests).",
)
@wait_options
@click.pass_context
@handled
def monitor_cmd(
    ctx: click.Context,
    model: str,
    as_of: str | None,
    topic: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Ask for a monitoring run of MODEL (drift and performance of its champion): publish a
    request on the monitor topic, as the schedule does, and optionally --wait for its end."""
    rt = configured(ctx, model)
    payload: dict[str, Any] = {"schema": 1, "model": model, "reason": "manual"}
    if as_of:
        payload["as_of"] = as_of
    request = publish_request(rt, "monitor", model, payload, topic_id=topic)
    if not wait:
        emit(
            ctx,
            request,
            f"{model}: monitor requested (message {request['message_id']} on "
            f"{request['topic']}); follow it with: warden runs {model} --kind monitor",
        )
        return
    click.echo(f"{model}: monitor requested (message {request['message_id']})", err=True)
    finish_wait(ctx, rt, request, model, "monitor", timeout=timeout)
