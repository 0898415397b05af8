"""The command groups kept in modules of their own, as :mod:`warden.cli.main` registers them.

Add a module's command (a ``click.Command`` or ``click.Group``) to ``ALL``.
"""

from __future__ import annotations

import click

from warden.cli.alerts import alerts
from warden.cli.config_cmd import config
from warden.cli.local import local
from warden.cli.runs import monitor_cmd, runs

__all__ = ["ALL"]

ALL: list[click.Command] = []
ALL.append(alerts)
ALL.append(config)
ALL.extend([runs, monitor_cmd])
ALL.append(local)
