"""The ``warden`` command line for operators.

Local vs real GCP is configuration only: with ``STORAGE_EMULATOR_HOST`` set the same commands
talk to the emulator; without it, to Cloud Storage with Application Default Credentials.

Exit codes: 0 ok, 1 a Warden error, 2 usage, 3 not found, 4 integrity failure, 5 retryable.
"""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path
from typing import Any

import click

from warden.errors import IntegrityError, RetryableError, VersionNotFound, WardenError

EXIT_ERROR, EXIT_NOT_FOUND, EXIT_INTEGRITY, EXIT_RETRYABLE = 1, 3, 4, 5


def _runtime(ctx: click.Context):
    from warden import runtime
    from warden.settings import Settings

    obj = ctx.ensure_object(dict)
    if "rt" not in obj:
        settings = Settings.from_env(default_config=Path("warden.yaml"))
        if obj.get("config"):
            from dataclasses import replace

            settings = replace(settings, config_path=Path(obj["config"]))
        obj["rt"] = runtime.build(settings)
    return obj["rt"]


def _emit(ctx: click.Context, data: Any, text: str) -> None:
    if ctx.obj.get("json"):
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        click.echo(text)


def handled(fn):
    """Turn Warden errors into a message on stderr and a meaningful exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VersionNotFound as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_NOT_FOUND)
        except IntegrityError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INTEGRITY)
        except RetryableError as exc:
            click.echo(f"error (retry later): {exc}", err=True)
            sys.exit(EXIT_RETRYABLE)
        except WardenError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper


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
    rt = _runtime(ctx)
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
    _emit(ctx, rows, text)


@main.command()
@click.argument("model")
@click.pass_context
@handled
def versions(ctx: click.Context, model: str) -> None:
    """List the registered versions of MODEL."""
    rt = _runtime(ctx)
    rt.config.model(model)
    champion = rt.registry().alias(model)
    rows = []
    for m in rt.registry().versions(model):
        metric = m.get("gate", {}).get("metric")
        rows.append(
            {
                "version": m["version"],
                "created_at": m.get("created_at"),
                "metric": metric,
                "value": (m.get("metrics", {}).get("candidate") or {}).get(metric),
                "gate_passed": m.get("gate", {}).get("passed"),
                "champion": bool(champion and champion.version == m["version"]),
            }
        )
    lines = [
        f"{'*' if r['champion'] else ' '} v{r['version']:<5} {r['created_at']}  "
        f"{r['metric']}={r['value']:.4f}  gate={'pass' if r['gate_passed'] else 'FAIL'}"
        for r in rows
    ]
    _emit(ctx, rows, "\n".join(lines) or f"{model}: no versions yet")


@main.command()
@click.argument("ref")
@click.pass_context
@handled
def show(ctx: click.Context, ref: str) -> None:
    """Show a version's manifest: MODEL, MODEL@VERSION or MODEL@ALIAS."""
    model, _, version = ref.partition("@")
    manifest = _runtime(ctx).registry().manifest(model, version or "champion")
    _emit(ctx, manifest, json.dumps(manifest, indent=2, sort_keys=True, default=str))


@main.command()
@click.argument("model")
@click.argument("version", type=int)
@click.option("--reason", default="manual promote", show_default=True)
@click.pass_context
@handled
def promote(ctx: click.Context, model: str, version: int, reason: str) -> None:
    """Point MODEL's champion at VERSION (after verifying its artifact)."""
    state = _runtime(ctx).registry().promote(model, version, reason=reason, actor="cli")
    assert state is not None
    _emit(
        ctx,
        state.to_json(),
        f"{model}: champion is now v{state.version} (was v{state.previous_version})",
    )


@main.command()
@click.argument("model")
@click.option("--to", "to", type=int, default=None, help="Version to roll back to.")
@click.option("--reason", default="manual rollback", show_default=True)
@click.pass_context
@handled
def rollback(ctx: click.Context, model: str, to: int | None, reason: str) -> None:
    """Point MODEL's champion back at the previous champion (or --to VERSION)."""
    state = _runtime(ctx).registry().rollback(model, to=to, reason=reason, actor="cli")
    _emit(
        ctx,
        state.to_json(),
        f"{model}: rolled back to v{state.version} (from v{state.previous_version})",
    )


@main.command()
@click.argument("model")
@click.pass_context
@handled
def history(ctx: click.Context, model: str) -> None:
    """The champion alias's moves for MODEL, oldest first."""
    entries = _runtime(ctx).registry().history(model)
    lines = [
        f"#{h.seq:<3} {h.changed_at}  {h.action:<8} v{h.previous_version or '-'} -> "
        f"v{h.version}  by {h.actor}: {h.reason}"
        for h in entries
    ]
    _emit(ctx, [h.to_json() for h in entries], "\n".join(lines) or f"{model}: no history")


@main.command()
@click.option("--keep", is_flag=True, help="Leave the run folder (logs) in place.")
def demo(keep: bool) -> None:
    """Run Warden end to end on local emulators and print what happened."""
    from warden_local.demo import run_demo

    sys.exit(run_demo(keep=keep))


if __name__ == "__main__":  # pragma: no cover
    main()
