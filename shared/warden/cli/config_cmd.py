"""``warden config``: check ``warden.yaml`` and print its reference (JSON Schema, Markdown).

``validate`` reads no storage: it parses the file, validates it as the functions do, and builds
each model's estimator (scikit-learn checks its parameters only then). ``schema`` and ``docs``
print what :mod:`warden.config.reference` generates from the config models; ``--out`` writes
it instead (``docs/warden.schema.json`` and ``docs/config.md`` are checked in).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from warden.cli.common import EXIT_ERROR, emit, handled, runtime_for

__all__ = ["config"]


@click.group("config")
def config() -> None:
    """Check warden.yaml; print its JSON Schema or its reference page."""


@config.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
@handled
def validate(ctx: click.Context, file: Path | None) -> None:
    """Validate FILE (default: the configured warden.yaml): exit 1 naming each problem's key."""
    from warden.config import load_config, parse_alerting
    from warden.config.estimators import build_estimator
    from warden.errors import ConfigError

    path = file if file is not None else runtime_for(ctx).settings.config_path
    problems: list[str] = []
    models = routes = 0
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        problems = str(exc).splitlines()
        problems += [p for p in _alerting_problems(path) if p not in problems]
    else:
        models = len(cfg.models)
        for name, model in sorted(cfg.models.items()):
            try:  # what only scikit-learn knows: unknown or out-of-range parameters
                build_estimator(model.estimator, where=f"{path}: models.{name}.estimator")
            except ConfigError as exc:
                problems.append(str(exc))
            except (TypeError, ValueError) as exc:  # a factory refusing its factory_params
                problems.append(
                    f"{path}: models.{name}.estimator.factory_params: {type(exc).__name__}: {exc}"
                )
        if cfg.alerting is not None:
            nodes = [parse_alerting(cfg.alerting, str(path)).tree]
            while nodes:
                routes += 1
                nodes.extend(nodes.pop().children)
    if ctx.obj.get("json"):
        emit(
            ctx,
            {
                "file": str(path),
                "ok": not problems,
                "models": models,
                "routes": routes,
                "errors": problems,
            },
            "",
        )
    elif problems:
        for line in problems:
            click.echo(f"error: {line}", err=True)
        click.echo(f"{path}: {len(problems)} problem(s)", err=True)
    else:
        click.echo(f"ok: {models} models, alerting: {routes} routes")
    if problems:
        sys.exit(EXIT_ERROR)


def _alerting_problems(path: Path) -> list[str]:
    """The alerting section's problems: parse_config checks it only once the rest is valid."""
    import yaml

    from warden.config import parse_alerting
    from warden.errors import ConfigError

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # load_config said so already
    if not isinstance(raw, dict) or not isinstance(raw.get("alerting"), dict):
        return []
    try:
        parse_alerting(raw["alerting"], str(path))
    except ConfigError as exc:
        return str(exc).splitlines()
    return []


def _output(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)


@config.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
def schema(out: Path | None) -> None:
    """Print the JSON Schema of warden.yaml (for editors; checked in as docs/warden.schema.json)."""
    from warden.config.reference import schema_text

    _output(schema_text(), out)


@config.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
def docs(out: Path | None) -> None:
    """Print the reference of every warden.yaml key as Markdown (docs/config.md)."""
    from warden.config.reference import markdown

    _output(markdown(), out)
