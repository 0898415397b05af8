"""Cloud Function (2nd gen) ``health``: HTTP JSON health of the registry and every champion.

``GET /?deep=true`` also loads each champion (downloads it, checks its sha256, imports
scikit-learn); the default compares each champion's object metadata (generation, size, crc32c,
md5) with its manifest, reads no artifact bytes, and stays light. ``fail_on=stale`` answers 503
when a scheduled job is stale too (what the uptime check asks for).
"""

from __future__ import annotations

import json
from pathlib import Path

import functions_framework

from warden import runtime
from warden.jobs.health import check_health
from warden.web import MAX_URL_BYTES, url_length

CONFIG = Path(__file__).with_name("warden.yaml")


@functions_framework.http
def health(request):
    if url_length(request) > MAX_URL_BYTES:
        return json.dumps({"error": "URL too long"}), 414, {"Content-Type": "application/json"}
    deep = request.args.get("deep", "").lower() in {"1", "true", "yes"}
    fail_on = request.args.get("fail_on", "unhealthy").lower()
    if fail_on not in {"unhealthy", "stale"}:
        return (
            json.dumps({"error": f"fail_on must be 'unhealthy' or 'stale', got {fail_on[:32]!r}"}),
            400,
            {"Content-Type": "application/json"},
        )
    rt = runtime.current(default_config=CONFIG)
    status, body = check_health(rt, deep=deep, fail_on_stale=fail_on == "stale")
    return (
        json.dumps(body, sort_keys=True),
        status,
        {"Content-Type": "application/json", "Cache-Control": "no-store"},
    )
