"""The self-contained HTML reports (evaluation and drift), drawn from Jinja2 templates with
autoescape, and their inline SVG charts.

* :mod:`~warden.report.html` — rendering (plain data into the templates) and the chart functions.
* :mod:`~warden.report.version` — the report stored with each version.
* ``templates/`` — the pages: ``base.html.j2`` (layout, inline CSS, CSP), ``macros.html.j2``
  (repeated pieces), ``drift.html.j2`` and ``version.html.j2``. Bundles must ship them.

Pure: no I/O beyond reading those templates. May import :mod:`warden.errors` only (and jinja2,
markupsafe).
"""

__all__ = [
    "html",
    "version",
]
