"""Cloud Function (2nd gen) ``health``: HTTP JSON health of the registry and every champion.

``GET /?deep=true`` also loads each champion (imports scikit-learn); the default only verifies
artifacts against their manifests' sha256, and stays light.
"""

from __future__ import annotations

import json
from pathlib import Path

import functions_framework

from warden import runtime
from warden.health import check_health

CONFIG = Path(__file__).with_name("warden.yaml")


@functions_framework.http
def health(request):
    deep = request.args.get("deep", "").lower() in {"1", "true", "yes"}
    status, body = check_health(runtime.current(default_config=CONFIG), deep=deep)
    return (
        json.dumps(body, sort_keys=True),
        status,
        {"Content-Type": "application/json", "Cache-Control": "no-store"},
    )
