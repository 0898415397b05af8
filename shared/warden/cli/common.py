"""What every ``warden`` command shares: the runtime, the model check, output, exit codes.

Command modules (``warden.cli.*``) import from here; :mod:`warden.cli.main` builds the group and
registers them.
"""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path
from typing import Any

import click

from warden.errors import (
    IntegrityError,
    RetryableError,
    UnknownModelError,
    VersionNotFound,
    WardenError,
)

__all__ = [
    "EXIT_CREDENTIALS",
    "EXIT_ERROR",
    "EXIT_INTEGRITY",
    "EXIT_NOT_FOUND",
    "EXIT_RETRYABLE",
    "NO_CREDENTIALS",
    "configured",
    "emit",
    "handled",
    "runtime_for",
]

EXIT_ERROR, EXIT_NOT_FOUND, EXIT_INTEGRITY, EXIT_RETRYABLE = 1, 3, 4, 5
#: No Google credentials and no emulator: the client libraries found nothing to talk to.
EXIT_CREDENTIALS = 6
NO_CREDENTIALS = (
    "error: no Google credentials and no emulator (STORAGE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST): "
    'run `eval "$(warden local env)"` for the local stack, or '
    "`gcloud auth application-default login` for a real project"
)


def runtime_for(ctx: click.Context):
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


def configured(ctx: click.Context, model: str):
    """The runtime, once ``model`` is declared in warden.yaml (else UnknownModelError, exit 3,
    naming the declared models) — checked before anything reads or writes the registry."""
    rt = runtime_for(ctx)
    rt.config.model(model)
    return rt


def emit(ctx: click.Context, data: Any, text: str) -> None:
    if ctx.obj.get("json"):
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        click.echo(text)


def _no_credentials(exc: Exception) -> bool:
    from google.auth.exceptions import DefaultCredentialsError  # only on the error path

    return isinstance(exc, DefaultCredentialsError)


def handled(fn):
    """Turn Warden errors into a message on stderr and a meaningful exit code; so too a client
    library finding neither credentials nor an emulator (one sentence, exit 6, no traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (VersionNotFound, UnknownModelError) as exc:
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
        except Exception as exc:
            if not _no_credentials(exc):
                raise
            click.echo(NO_CREDENTIALS, err=True)
            sys.exit(EXIT_CREDENTIALS)

    return wrapper
