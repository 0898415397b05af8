"""The evaluation report stored with each version (``report.html``).

Kept as the entry point retraining calls; the page itself is drawn by
:func:`warden.report.html.render_version_report` from the template ``version.html.j2``
(self-contained: no scripts, no external assets).
"""

from __future__ import annotations

from typing import Any

from warden.report.html import render_version_report

__all__ = ["render_report"]


def render_report(manifest: dict[str, Any], profile: dict[str, Any] | None = None) -> str:
    """The HTML page for one registered version (manifest, and its profile when there is one)."""
    return render_version_report(manifest, profile)
