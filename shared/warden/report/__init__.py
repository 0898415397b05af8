"""The self-contained HTML reports (evaluation and drift), drawn from Jinja2 templates with
autoescape, and their inline SVG charts.

* :mod:`~warden.report.html` — rendering and the chart functions.
* :mod:`~warden.report.version` — the report stored with each version.

Pure: no I/O. May import :mod:`warden.errors` only.
"""

__all__ = [
    "html",
    "version",
]
