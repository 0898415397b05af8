"""The ``warden`` command line for operators.

Local vs real GCP is configuration only: with ``STORAGE_EMULATOR_HOST`` set the same commands
talk to the emulator; without it, to Cloud Storage with Application Default Credentials.

Exit codes: 0 ok, 1 a Warden error, 2 usage, 3 not found (a version, alias, job or silence, or a
model warden.yaml does not declare), 4 integrity failure, 5 retryable, 6 no Google credentials
and no emulator (one sentence says what to set).

``retrain --wait`` and ``monitor --wait`` follow the requested run to its end (the run ledger's
marker, :mod:`warden.cli.runs`): 0 done, 7 the run failed (its error text on stderr), 8 gave up
waiting after ``--timeout`` seconds (the run may still finish: ``warden runs MODEL``).

Commands that take a MODEL check it against warden.yaml before they touch storage: a name the
config does not declare is refused, never looked up in (or written to) the registry.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from warden.cli.common import (
    EXIT_ERROR,
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,  # noqa: F401 (re-exported: tests and scripts read the codes here)
    configured,
    emit,
    handled,
    runtime_for,
)
from warden.cli.runs import check_as_of, finish_wait, publish_request, wait_options
from warden.errors import VersionNotFound


@click.group()
@click.option("--config", type=click.Path(dir_okay=False), help="warden.yaml to use.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def main(ctx: click.Context, config: str | None, as_json: bool) -> None:
    """Warden: keep scikit-learn models healthy on Google Cloud."""
    ctx.ensure_object(dict).update(config=config, json=as_json)


@main.command()
@click.pass_context
@handled
def models(ctx: click.Context) -> None:
    """List the configured models and their champions."""
    rt = runtime_for(ctx)
    rows = []
    for name, cfg in sorted(rt.config.models.items()):
        champion = rt.registry().alias(name)
        rows.append(
            {"model": name, "task": cfg.task, "champion": champion.version if champion else None}
        )
    text = "\n".join(
        f"{r['model']:<24} {r['task']:<15} champion: "
        f"{'v' + str(r['champion']) if r['champion'] else '-'}"
        for r in rows
    )
    emit(ctx, rows, text)


@main.command()
@click.argument("model")
@click.pass_context
@handled
def versions(ctx: click.Context, model: str) -> None:
    """List the registered versions of MODEL: each one's gate metric beside the champion's it
    was compared with, the gate outcome, and * on the current champion."""
    from warden.cli.format import version_rows, versions_text

    registry = configured(ctx, model).registry()
    champion = registry.alias(model)
    rows = version_rows(registry.versions(model), champion.version if champion else None)
    emit(ctx, rows, versions_text(model, rows))


@main.command()
@click.argument("ref")
@click.pass_context
@handled
def show(ctx: click.Context, ref: str) -> None:
    """Summarise a version (MODEL, MODEL@VERSION or MODEL@ALIAS): gate verdict and reasons,
    metrics beside the champion's, data window, files. --json prints the whole manifest."""
    from warden.cli.format import show_text

    model, _, version = ref.partition("@")
    registry = configured(ctx, model).registry()
    manifest = registry.manifest(model, version or "champion")
    if ctx.obj.get("json"):
        emit(ctx, manifest, "")
        return
    champion = registry.alias(model)
    emit(ctx, manifest, show_text(manifest, champion=champion.version if champion else None))


@main.command()
@click.argument("model")
@click.argument("version", type=int)
@click.option(
    "--reason",
    default=None,
    help="Why (history and the promoted event); required with --force. [default: manual promote]",
)
@click.option(
    "--force", is_flag=True, help="Promote a version that failed its gate (with --reason)."
)
@click.pass_context
@handled
def promote(ctx: click.Context, model: str, version: int, reason: str | None, force: bool) -> None:
    """Point MODEL's champion at VERSION (after verifying its artifact); publishes `promoted`.

    A version that failed its gate needs --force and --reason. Promoting the champion again
    changes nothing: "already champion", exit 0, no event. History records the operator
    (warden.settings.operator_identity)."""
    from warden.settings import operator_identity

    rt = configured(ctx, model)
    registry = rt.registry()
    current = registry.alias(model)
    if current is not None and current.version == version:
        emit(
            ctx, {**current.to_json(), "changed": False}, f"{model}: v{version} is already champion"
        )
        return
    gate = registry.manifest(model, version).get("gate") or {}
    forced = gate.get("passed") is False
    if forced and not (force and reason):
        why = "; ".join(str(r) for r in gate.get("reasons", [])) or "gate.passed is false"
        raise click.UsageError(
            f"{model}: v{version} failed its gate ({why}). To promote it anyway, say why: "
            f"warden promote {model} {version} --force --reason '...'"
        )
    recorded = f"forced past a failed gate: {reason}" if forced else (reason or "manual promote")
    actor = operator_identity()
    moved: list[bool] = [False]

    def decide(now: Any) -> int:
        moved[0] = now is None or now.version != version  # the last attempt's view decides
        return version

    state = registry.move_alias(model, decide, action="promote", reason=recorded, actor=actor)
    assert state is not None
    if not moved[0]:  # someone promoted it meanwhile
        emit(ctx, {**state.to_json(), "changed": False}, f"{model}: v{version} is already champion")
        return
    rt.events().try_publish(
        "promoted",
        model,
        version=state.version,
        previous_version=state.previous_version,
        reason=recorded,
        actor=actor,
        forced=forced,
        source="cli",
    )
    emit(
        ctx,
        {**state.to_json(), "changed": True, "forced": forced},
        f"{model}: champion is now v{state.version} (was v{state.previous_version})"
        + (" — forced past its failed gate" if forced else ""),
    )


@main.command()
@click.argument("model")
@click.option("--to", "to", type=int, default=None, help="Version to roll back to.")
@click.option("--reason", default="manual rollback", show_default=True)
@click.pass_context
@handled
def rollback(ctx: click.Context, model: str, to: int | None, reason: str) -> None:
    """Point MODEL's champion back at the previous champion (or --to VERSION); publishes
    `rolled_back`. Rolling back --to the champion changes nothing (exit 0, no event)."""
    from warden.settings import operator_identity

    rt = configured(ctx, model)
    registry = rt.registry()
    before = registry.alias(model)
    if before is not None and to == before.version:
        emit(ctx, {**before.to_json(), "changed": False}, f"{model}: v{to} is already champion")
        return
    actor = operator_identity()
    state = registry.rollback(model, to=to, reason=reason, actor=actor)
    if before is not None and state.seq == before.seq:  # nothing moved (a race made it so)
        emit(
            ctx,
            {**state.to_json(), "changed": False},
            f"{model}: v{state.version} is already champion",
        )
        return
    rt.events().try_publish(
        "rolled_back",
        model,
        version=state.version,
        previous_version=state.previous_version,
        reason=reason,
        actor=actor,
        source="cli",
    )
    emit(
        ctx,
        {**state.to_json(), "changed": True},
        f"{model}: rolled back to v{state.version} (from v{state.previous_version})",
    )


@main.command()
@click.argument("model")
@click.pass_context
@handled
def history(ctx: click.Context, model: str) -> None:
    """The champion alias's moves for MODEL, oldest first."""
    entries = configured(ctx, model).registry().history(model)
    lines = [
        f"#{h.seq:<3} {h.changed_at}  {h.action:<8} v{h.previous_version or '-'} -> "
        f"v{h.version}  by {h.actor}: {h.reason}"
        for h in entries
    ]
    emit(ctx, [h.to_json() for h in entries], "\n".join(lines) or f"{model}: no history")


@main.command("retrain")
@click.argument("model")
@click.option(
    "--as-of",
    default=None,
    callback=check_as_of,
    help="Last day of the data window (YYYY-MM-DD).",
)
@click.option(
    "--reason",
    default="manual",
    show_default=True,
    type=click.Choice(["manual", "backfill", "drift", "degradation", "alert"]),
)
@wait_options
@click.pass_context
@handled
def retrain_cmd(
    ctx: click.Context, model: str, as_of: str | None, reason: str, wait: bool, timeout: float
) -> None:
    """Ask for a retrain of MODEL: publish a request on the retrain topic (--wait: follow the
    run to its end; exit 7 if it failed, 8 if --timeout passed first)."""
    rt = configured(ctx, model)
    payload: dict[str, Any] = {"schema": 1, "model": model, "reason": reason}
    if as_of:
        payload["as_of"] = as_of
    request = publish_request(rt, "retrain", model, payload)
    if not wait:
        emit(
            ctx,
            request,
            f"{model}: retrain requested (message {request['message_id']} on "
            f"{request['topic']}); follow it with: warden runs {model} --kind retrain",
        )
        return
    click.echo(f"{model}: retrain requested (message {request['message_id']})", err=True)
    finish_wait(ctx, rt, request, model, "retrain", timeout=timeout)


@main.command("register")
@click.argument("model")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--as-of",
    default=None,
    callback=check_as_of,
    help="Last day of the data window it is evaluated on (YYYY-MM-DD). [default: today, UTC]",
)
@click.option("--force", is_flag=True, help="Promote it even if it fails its gate (with --reason).")
@click.option("--reason", default=None, help="Why (alias history); required with --force.")
@click.option(
    "--again", is_flag=True, help="Register a file already registered for MODEL (same sha256)."
)
@click.pass_context
@handled
def register_cmd(
    ctx: click.Context,
    model: str,
    file: Path,
    as_of: str | None,
    force: bool,
    reason: str | None,
    again: bool,
) -> None:
    """Import FILE, an externally trained scikit-learn model (joblib), as a new version of MODEL.

    It must take exactly MODEL's configured features (and, for a classifier, give probabilities
    with the positive label among its classes). It is evaluated against the champion on the
    configured data's holdout and gated exactly like a retrain; promoted if the gate passes (or
    with --force --reason), else registered only, with the gate's reasons (exit 0 either way).
    A file already registered for MODEL is refused unless --again."""
    from datetime import date

    from warden.jobs.register import register_file
    from warden.settings import operator_identity

    if force and not reason:
        raise click.UsageError("--force needs --reason: say why it is promoted past its gate")
    outcome = register_file(
        configured(ctx, model),
        model,
        file,
        as_of=date.fromisoformat(as_of) if as_of else None,
        force=reason if force else None,
        reason=reason,
        again=again,
        actor=operator_identity(),
    )
    metric = outcome.gate.get("metric")
    value = outcome.gate.get("candidate_value")
    scored = f" ({metric} {value:.4f})" if isinstance(value, int | float) else ""
    head = f"{model}: registered {file.name} as v{outcome.version}{scored}"
    if outcome.promoted:
        was = f"v{outcome.champion_version}" if outcome.champion_version else "none"
        text = f"{head}; champion is now v{outcome.version} (was {was})"
        if outcome.forced:
            text += " — forced past its failed gate"
    elif outcome.gate.get("passed"):
        text = f"{head}; not promoted: {outcome.detail}"
    else:
        failed = [str(r) for r in outcome.gate.get("reasons", []) if "rejected" in str(r)]
        text = (
            f"{head}; not promoted, its gate failed: {'; '.join(failed) or outcome.detail}\n"
            f"To promote it anyway: warden promote {model} {outcome.version} --force "
            "--reason '...'"
        )
    emit(ctx, outcome.to_dict(), text)


@main.command()
@click.argument("ref")
@click.option(
    "--monitor",
    "monitor_run",
    is_flag=True,
    help="The latest drift-monitoring report instead of the version's.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to write the HTML into.",
)
@click.pass_context
@handled
def report(ctx: click.Context, ref: str, monitor_run: bool, out: Path) -> None:
    """Download the HTML report of MODEL[@VERSION] (or its latest monitoring run)."""
    rt = runtime_for(ctx)
    model, _, version_ref = ref.partition("@")
    rt.config.model(model)
    out.mkdir(parents=True, exist_ok=True)
    if monitor_run:
        bucket = rt.settings.registry_bucket
        names = sorted(
            b.name
            for b in rt.clients.storage.list_blobs(bucket, prefix=f"{model}/monitoring/")
            if b.name.endswith("/report.html")
        )
        if not names:
            raise VersionNotFound(f"{model}: no monitoring runs yet")
        data = rt.clients.storage.bucket(bucket).blob(names[-1]).download_as_bytes()
        path = out / f"{model}-monitor-{names[-1].split('/')[-2]}.html"
    else:
        registry = rt.registry()
        version = registry.resolve(model, version_ref or "champion")
        manifest = registry.manifest(model, version)
        data = registry.read_file(model, version, "report.html", manifest)
        path = out / f"{model}-v{version}.html"
    path.write_bytes(data)
    emit(ctx, {"path": str(path.resolve()), "bytes": len(data)}, str(path.resolve()))


@main.group()
def silence() -> None:
    """Silence alerts by label matchers for a while (stored with the router's state)."""


@silence.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--duration", default="2h", show_default=True, help="e.g. 30m, 2h, 1d")
@click.option("--comment", default="", help="Why (shown in `silence list`).")
@click.option("--author", default=None, help="Who (default: $USER).")
@click.pass_context
@handled
def silence_add(
    ctx: click.Context, matchers: tuple[str, ...], duration: str, comment: str, author: str | None
) -> None:
    """Add a silence: MATCHERS like 'model="customer-segments"' 'severity=~"warning|info"'."""
    import getpass
    import time

    from warden.config.alerting import parse_duration

    days = duration[:-1]
    seconds = (
        float(days) * 86400
        if duration.endswith("d") and days.isdigit()
        else parse_duration(duration)
    )
    if not seconds or seconds <= 0:
        raise click.BadParameter(f"not a positive duration: {duration!r}", param_hint="--duration")
    now = time.time()
    try:
        created = (
            runtime_for(ctx)
            .alert_state()
            .add_silence(
                matchers,
                starts_at=now,
                ends_at=now + seconds,
                created_by=author or getpass.getuser(),
                comment=comment,
            )
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="MATCHERS") from None
    emit(ctx, created.to_json(), f"silence {created.id} until {_when(created.ends_at)}")


def _when(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@click.pass_context
@handled
def silence_list(ctx: click.Context, show_all: bool) -> None:
    """Active silences (or all of them)."""
    import time

    items = runtime_for(ctx).alert_state().list_silences(None if show_all else time.time())
    lines = [
        f"{s.id}  until {_when(s.ends_at)}  by {s.created_by}  {' '.join(s.matchers)}"
        f"{'  # ' + s.comment if s.comment else ''}"
        for s in items
    ]
    emit(ctx, [s.to_json() for s in items], "\n".join(lines) or "no active silences")


@silence.command("expire")
@click.argument("silence_id")
@click.pass_context
@handled
def silence_expire(ctx: click.Context, silence_id: str) -> None:
    """End a silence now."""
    import time

    if not runtime_for(ctx).alert_state().expire_silence(silence_id, now=time.time()):
        raise VersionNotFound(f"no active silence {silence_id!r}")
    emit(ctx, {"expired": silence_id}, f"silence {silence_id} expired")


@main.group()
def jobs() -> None:
    """Scheduled jobs, through the Cloud Scheduler API (the local stand-in or the real one)."""


def _job_name(rt: Any, job_id: str) -> str:
    return f"projects/{rt.settings.project}/locations/{rt.settings.location}/jobs/{job_id}"


def _job_row(job: Any) -> dict[str, Any]:
    from google.cloud import scheduler_v1

    state = scheduler_v1.Job.State(job.state).name
    return {
        "job": job.name.rsplit("/", 1)[-1],
        "schedule": job.schedule,
        "time_zone": job.time_zone,
        "state": state,
        "next_run": job.schedule_time.isoformat() if job.schedule_time else None,
        "last_attempt": job.last_attempt_time.isoformat() if job.last_attempt_time else None,
        "topic": job.pubsub_target.topic_name if job.pubsub_target else None,
    }


def _job_text(r: dict[str, Any]) -> str:
    return (
        f"{r['job']:<32} {r['state']:<8} {r['schedule']:<14} {r['time_zone']:<18} "
        f"next {r['next_run'] or '-'}"
    )


@jobs.command("list")
@click.pass_context
@handled
def jobs_list(ctx: click.Context) -> None:
    """List the scheduled jobs."""
    rt = runtime_for(ctx)
    parent = f"projects/{rt.settings.project}/locations/{rt.settings.location}"
    rows = [_job_row(j) for j in rt.clients.scheduler.list_jobs(parent=parent)]
    emit(ctx, rows, "\n".join(_job_text(r) for r in rows) or "no jobs")


def _job_action(action: str, doc: str):
    @jobs.command(action, help=doc)
    @click.argument("job_id")
    @click.pass_context
    @handled
    def command(ctx: click.Context, job_id: str) -> None:
        from google.api_core.exceptions import NotFound

        rt = runtime_for(ctx)
        method = getattr(rt.clients.scheduler, f"{action}_job")
        try:
            job = method(name=_job_name(rt, job_id))
        except NotFound:
            raise VersionNotFound(f"no job {job_id!r} (see: warden jobs list)") from None
        row = _job_row(job)
        emit(ctx, row, f"{action}: {_job_text(row)}")

    return command


_job_action("run", "Run JOB_ID now (it publishes its message as a tick would).")
_job_action("pause", "Pause JOB_ID: it stops ticking until resumed.")
_job_action("resume", "Resume JOB_ID.")


@main.command()
@click.argument("model")
@click.option("--since-hours", type=float, default=24 * 7, show_default=True)
@click.pass_context
@handled
def metrics(ctx: click.Context, model: str, since_hours: float) -> None:
    """Recent Cloud Monitoring points of MODEL's Warden metrics."""
    from datetime import UTC, datetime, timedelta

    rt = runtime_for(ctx)
    rt.config.model(model)
    since = datetime.now(UTC) - timedelta(hours=since_hours)
    rows = []
    for name in (
        "model/silhouette",
        "model/roc_auc",
        "model/f1",
        "model/accuracy",
        "model/promoted",
        "retrain/duration",
        "run/success",
        "drift/share",
        "drift/dataset",
        "monitor/performance",
        "monitor/performance_drop",
    ):
        for labels, at, value in rt.metrics().read(name, labels={"model": model}, since=since):
            rows.append({"metric": name, "labels": labels, "at": at.isoformat(), "value": value})
    rows.sort(key=lambda r: (r["metric"], r["at"]))
    text = "\n".join(
        f"{r['at']}  {r['metric']:<18} {r['value']:.4f}  "
        f"{'v' + r['labels']['version'] if 'version' in r['labels'] else ''}"
        for r in rows
    )
    emit(ctx, rows, text or f"{model}: no metrics in the last {since_hours:g} hours")


@main.command()
@click.option("--deep", is_flag=True, help="Also load each champion (imports scikit-learn).")
@click.option(
    "--fail-on",
    type=click.Choice(["unhealthy", "stale"]),
    default="unhealthy",
    show_default=True,
    help="Exit 1 when unhealthy, or also when a scheduled job is stale (the uptime check's view).",
)
@click.pass_context
@handled
def health(ctx: click.Context, deep: bool, fail_on: str) -> None:
    """Health of the registry and every champion (what the health function answers)."""
    from warden.jobs.health import check_health

    status, body = check_health(runtime_for(ctx), deep=deep, fail_on_stale=fail_on == "stale")
    lines = [f"status: {body['status']}"]
    for name, entry in sorted(body.get("models", {}).items()):
        champion = (entry.get("champion") or {}).get("version")
        lines.append(
            f"  {name:<24} {entry['status']:<9} champion "
            f"{'v' + str(champion) if champion else '-'}  {entry.get('detail', '')}"
        )
    emit(ctx, body, "\n".join(lines))
    if status >= 500:
        sys.exit(EXIT_ERROR)


@main.command("housekeeping")
@click.argument("model")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; change nothing.")
@click.pass_context
@handled
def housekeeping_cmd(ctx: click.Context, model: str, dry_run: bool) -> None:
    """Run MODEL's housekeeping now: integrity sweep, snapshot, retention, expiry."""
    from warden.jobs.housekeeping import run_housekeeping

    outcome = run_housekeeping(runtime_for(ctx), model, dry_run=dry_run)
    data = outcome.to_dict()
    lines = [f"housekeeping {model}: {outcome.status} — {outcome.detail}"]
    lines += [f"  {key}: {value}" for key, value in outcome.summary().items()]
    if dry_run:
        lines.append(f"  would delete versions: {outcome.retention.delete}")
    emit(ctx, data, "\n".join(lines))


@main.command()
@click.option("--model", help="Only this model (default: the whole registry).")
@click.option("--id", "snapshot_id", help="Snapshot id (default: a UTC timestamp).")
@click.pass_context
@handled
def backup(ctx: click.Context, model: str | None, snapshot_id: str | None) -> None:
    """Copy the registry (or one model) to the backup bucket as a consistent snapshot."""
    from warden.jobs.backup import snapshot

    rt = runtime_for(ctx)
    if model is not None:
        rt.config.model(model)  # unknown model: a clear error, not an empty snapshot
    snap = snapshot(rt, model=model, snapshot_id=snapshot_id)
    data = snap.to_dict()
    versions = sum(len(m.get("versions", {})) for m in data.get("models", {}).values())
    text = f"snapshot {snap.id}: {len(data.get('models', {}))} model(s), {versions} version(s)"
    if data.get("already_complete"):
        text += " (already complete)"
    emit(ctx, data, text)


@main.command()
@click.pass_context
@handled
def snapshots(ctx: click.Context) -> None:
    """List the complete snapshots in the backup bucket, newest first."""
    from warden.jobs.backup import list_snapshots

    rows = [s.to_dict() for s in list_snapshots(runtime_for(ctx))]
    text = "\n".join(
        f"{r['id']:<32} {r['created_at']}  models: {', '.join(sorted(r['models']))}" for r in rows
    )
    emit(ctx, rows, text or "no snapshots")


@main.command()
@click.argument("snapshot_id")
@click.option("--model", help="Only this model.")
@click.option("--dry-run", is_flag=True, help="Say what would be restored; write nothing.")
@click.pass_context
@handled
def restore(ctx: click.Context, snapshot_id: str, model: str | None, dry_run: bool) -> None:
    """Restore SNAPSHOT_ID into the registry without overwriting anything newer."""
    from warden.jobs.backup import restore as restore_snapshot

    report = restore_snapshot(runtime_for(ctx), snapshot_id, model=model, dry_run=dry_run)
    data = report.to_dict()
    lines = [f"restore {snapshot_id}{' (dry run)' if dry_run else ''}:"]
    for v in data.get("versions", []):
        lines.append(f"  {v['model']:<24} v{v['version']:<5} {v['status']}  {v.get('detail', '')}")
    for a in data.get("aliases", []):
        lines.append(f"  {a['model']:<24} champion {a['status']}  {a.get('detail', '')}")
    emit(ctx, data, "\n".join(lines))
    if not report.ok:
        sys.exit(EXIT_INTEGRITY)


@main.command()
@click.option("--keep", is_flag=True, help="Leave the run folder (logs) in place.")
def demo(keep: bool) -> None:
    """Run Warden end to end on local emulators and print what happened."""
    from warden_local.demo import run_demo

    sys.exit(run_demo(keep=keep))


# Command groups in modules of their own register themselves here.
def _register() -> None:
    from warden.cli import commands

    for command in commands.ALL:
        main.add_command(command)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
