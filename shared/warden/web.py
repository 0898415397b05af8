"""What Warden's HTTP functions share: a bound on the request line.

functions-framework runs gunicorn with ``limit_request_line = 0`` (no limit), so a megabyte of
query string reaches the function and its logs. Each HTTP entry point refuses a URL longer than
:data:`MAX_URL_BYTES` with 414 before doing anything else. Imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_URL_BYTES", "url_length"]

#: Longer than any URL Warden's callers send (Cloud Monitoring, uptime checks, the CLI); far
#: below what would bloat a log line.
MAX_URL_BYTES = 8 * 1024


def url_length(request: Any) -> int:
    """Bytes of the request's path and query string (a Flask/werkzeug request)."""
    environ = getattr(request, "environ", {}) or {}
    path = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if path is None:
        path = f"{environ.get('PATH_INFO', '')}?{environ.get('QUERY_STRING', '')}"
    return len(str(path).encode("utf-8", "surrogateescape"))
