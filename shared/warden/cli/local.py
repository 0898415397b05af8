"""``warden local``: the local cloud on this machine (emulators, stand-ins, the functions).

``up`` starts and supervises it, ``env`` points a shell at it, ``upload`` puts data files into a
model's partitions in its data bucket, ``reload`` restarts its functions and Scheduler jobs with
the edited warden.yaml. The local tooling (:mod:`warden_local`) is imported inside the commands
only: the CLI is never bundled into a function, and neither is the local tooling.
"""

from __future__ import annotations

import shlex
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from warden.cli.common import EXIT_ERROR, EXIT_NOT_FOUND, emit, handled

if TYPE_CHECKING:
    from warden.settings import Settings

__all__ = ["DEFAULT_RUN_DIR", "env_hint", "local", "local_command"]

#: Where ``warden local up`` keeps logs and stack.json unless told otherwise.
DEFAULT_RUN_DIR = Path(".warden/run")


def _run_dir_option(**kwargs: Any):
    return click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_RUN_DIR,
        show_default=True,
        **kwargs,
    )


def local_command(verb: str, run_dir: Path) -> str:
    """``warden local VERB``, with ``--run-dir`` when it is not the default one."""
    command = f"warden local {verb}"
    if Path(run_dir).resolve() != DEFAULT_RUN_DIR.resolve():
        command += f" --run-dir {shlex.quote(str(Path(run_dir).resolve()))}"
    return command


def env_hint(run_dir: Path) -> str:
    """The shell line that points a shell at the stack in ``run_dir``."""
    return f'eval "$({local_command("env", run_dir)})"'


@click.group()
def local() -> None:
    """The local cloud: emulators, stand-ins and the functions on this machine."""


@local.command("up")
@_run_dir_option(help="Logs and state go here.")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Scheduler clock speed (3600: an hour a second).",
)
@click.option("--clock-start", default=None, help="Scheduler clock start (RFC 3339).")
@click.option(
    "--shared-clock",
    is_flag=True,
    help="Functions and CLI read the scheduler's virtual clock too (leases, staleness, retention).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="warden.yaml to run  [default: warden --config, else warden.yaml]",
)
@click.option(
    "--only",
    default=None,
    help="Comma-separated functions to run (default: all), for a lighter stack.",
)
@click.option(
    "--alert-channel",
    type=click.Choice(["webhook", "pubsub"]),
    default="webhook",
    show_default=True,
    help="How the Monitoring stand-in sends incidents (Terraform's alert_channel).",
)
@click.option(
    "--persist",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep Cloud Storage (buckets, registry, data) in this folder across restarts.",
)
@click.pass_context
def local_up(
    ctx: click.Context,
    run_dir: Path,
    speed: float,
    clock_start: str | None,
    shared_clock: bool,
    config_path: Path | None,
    only: str | None,
    alert_channel: str,
    persist: Path | None,
) -> None:
    """Start the whole stack and supervise it until Ctrl-C (SIGUSR1: reload warden.yaml)."""
    from warden_local.stack import FUNCTIONS, LocalStack

    functions = FUNCTIONS
    if only:
        wanted = {name.strip() for name in only.split(",") if name.strip()}
        known = {f.name for f in FUNCTIONS}
        if wanted - known:
            raise click.BadParameter(
                f"unknown {sorted(wanted - known)}; known: {', '.join(sorted(known))}",
                param_hint="--only",
            )
        functions = tuple(f for f in FUNCTIONS if f.name in wanted)
    start = datetime.fromisoformat(clock_start.replace("Z", "+00:00")) if clock_start else None
    config = config_path or Path((ctx.obj or {}).get("config") or "warden.yaml")
    stack = LocalStack(
        config_path=config,
        run_dir=run_dir,
        speed=speed,
        clock_start=start,
        shared_clock=shared_clock,
        functions=functions,
        progress=lambda m: click.echo(f"  … {m}", err=True),
        alert_channel=alert_channel,
        storage_root=persist,
    )
    try:
        stack.start()
    except (RuntimeError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo("Warden local stack is up:")
    for name, value in sorted(stack.endpoints.items()):
        click.echo(f"  {name:<12} {value}")
    for name, url in sorted(stack.function_urls.items()):
        click.echo(f"  {name:<12} {url}  (function)")
    if stack.storage_root is not None:
        click.echo(f"storage kept in {stack.storage_root}")
    click.echo(f"logs in {stack.run_dir}; point a shell at it: {env_hint(run_dir)}")
    click.echo(
        f"Ctrl-C to stop; `{local_command('reload', run_dir)}` after editing {config}.", err=True
    )
    sys.exit(stack.serve_forever())


@local.command("env")
@_run_dir_option()
def local_env(run_dir: Path) -> None:
    """Print `export` lines that point clients (and this CLI) at the running stack."""
    from warden_local.stack import read_state

    try:
        state = read_state(run_dir)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    for key, value in sorted(state["env"].items()):
        click.echo(f"export {key}={shlex.quote(value)}")


@local.command("reload")
@_run_dir_option()
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for it."
)
def local_reload(run_dir: Path, timeout: float) -> None:
    """Restart the running stack's functions and Scheduler jobs with its warden.yaml as it is now.

    The stack re-reads the file it was started with; if it does not validate nothing changes and
    this says why. Data, registry and Pub/Sub subscriptions stay.
    """
    from warden_local.stack import request_reload

    try:
        outcome = request_reload(run_dir, timeout=timeout)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except (RuntimeError, TimeoutError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    if outcome.get("status") != "ok":
        click.echo(
            f"error: reload refused, the stack runs as before: {outcome.get('detail')}", err=True
        )
        sys.exit(EXIT_ERROR)
    click.echo(f"reloaded: {outcome.get('detail')}")


def _target_settings(ctx: click.Context, run_dir: Path) -> Settings:
    """The settings of the stack to upload to: the shell's (``STORAGE_EMULATOR_HOST`` set,
    as ``eval "$(warden local env)"`` sets it) unless ``--run-dir`` was given, else those in the
    run folder's stack.json; ``warden --config`` overrides the config path."""
    from dataclasses import replace

    from warden.settings import Settings

    explicit = ctx.get_parameter_source("run_dir") is not click.core.ParameterSource.DEFAULT
    settings = Settings.from_env(default_config=Path("warden.yaml"))
    if explicit or not settings.is_local:
        from warden_local.stack import read_state

        try:
            env = read_state(run_dir)["env"]
        except FileNotFoundError:
            click.echo(
                f"error: no running stack in {run_dir} and no STORAGE_EMULATOR_HOST: start one "
                f"(warden local up) or point this shell at it ({env_hint(run_dir)})",
                err=True,
            )
            sys.exit(EXIT_NOT_FOUND)
        settings = Settings.from_env(env, default_config=Path("warden.yaml"))
    if (ctx.obj or {}).get("config"):
        settings = replace(settings, config_path=Path(ctx.obj["config"]))
    return settings


@local.command("upload")
@click.argument("model")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Partition of a single file  [default: today, on the stack's clock]",
)
@click.option(
    "--unlabeled",
    is_flag=True,
    help="Accept files without the target column (drift monitoring only; training needs it).",
)
@_run_dir_option(help="The stack to upload to, when the shell does not point at one.")
@click.pass_context
@handled
def local_upload(
    ctx: click.Context,
    model: str,
    path: Path,
    day: datetime | None,
    unlabeled: bool,
    run_dir: Path,
) -> None:
    """Put CSV or Parquet data for MODEL into the local data bucket, in its dt= partitions.

    PATH is a file (into --date's partition) or a folder mirrored by the days in its paths
    (dt=YYYY-MM-DD/ or YYYY-MM-DD/ folders, or YYYY-MM-DD in file names). Every file must hold
    the model's features and target; a file in the other format is converted.
    """
    from warden.config import load_config
    from warden_local.upload import describe

    settings = _target_settings(ctx, run_dir)
    cfg = load_config(settings.config_path).model(model)
    today = settings.now().date()
    if path.is_dir() and day is not None:
        raise click.BadParameter(
            "a folder's files take their days from their paths (dt=YYYY-MM-DD/ folders or "
            "YYYY-MM-DD in file names); --date is for a single file",
            param_hint="--date",
        )
    partition = day.date() if day is not None else (None if path.is_dir() else today)
    written, plan = _upload(settings, cfg, path, partition, unlabeled)
    lines = [
        f"  {row['object']}"
        + (f"  (converted from {row['converted_from']})" if row["converted_from"] else "")
        for row in written
    ]
    lines.append(f"{model}: {describe(plan)}")
    if plan.skipped:
        lines.append(
            f"skipped {len(plan.skipped)} file(s) neither .csv nor .parquet: "
            + ", ".join(str(p) for p in plan.skipped[:5])
            + (" …" if len(plan.skipped) > 5 else "")
        )
    lines += _window_note(cfg, plan.days, today)
    emit(
        ctx,
        {
            "model": model,
            "bucket": plan.bucket,
            "prefix": plan.prefix,
            "objects": written,
            "skipped": [str(p) for p in plan.skipped],
            "partitions": [d.isoformat() for d in plan.days],
        },
        "\n".join(lines),
    )


def _upload(settings: Settings, cfg: Any, path: Path, day: date | None, unlabeled: bool):
    import requests
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from warden_local.upload import plan_upload, upload

    plan = plan_upload(
        path, cfg, bucket=cfg.data.bucket or settings.data_bucket, day=day, unlabeled=unlabeled
    )
    host = settings.storage_emulator_host
    client = storage.Client(
        project=settings.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": host},
    )
    try:
        return upload(client, plan), plan
    except requests.ConnectionError:
        click.echo(
            f"error: cannot reach the storage emulator at {host}: is the stack up?", err=True
        )
        sys.exit(EXIT_ERROR)


def _window_note(cfg: Any, days: list[date], today: date) -> list[str]:
    """A hint when the newest partition uploaded is outside the window a run of today reads."""
    if not days:
        return []
    newest = days[-1]
    first = date.fromordinal(today.toordinal() - cfg.data.window_days + 1)
    if first <= newest <= today:
        return []
    return [
        f"note: a run today reads dt={first.isoformat()}..dt={today.isoformat()} "
        f"(data.window_days={cfg.data.window_days}); for these partitions: "
        f"warden retrain {cfg.name} --as-of {newest.isoformat()}"
    ]
