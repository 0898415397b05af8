"""The command groups kept in modules of their own, as :mod:`warden.cli.main` registers them.

Add a module's command (a ``click.Command`` or ``click.Group``) to ``ALL``.
"""

from __future__ import annotations

import click

__all__ = ["ALL"]

ALL: list[click.Command] = []
