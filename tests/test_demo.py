"""`warden demo` (what `make demo`, the README's first command, runs) on the full local stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _processes_with(marker: str) -> list[str]:
    """Processes whose environment carries ``marker``: every child the demo started inherits it."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except (OSError, PermissionError):
            continue
    return found


def test_demo_runs_end_to_end_and_leaves_no_process() -> None:
    marker = f"DEMO_TEST_MARK={uuid.uuid4().hex}"
    key, value = marker.split("=")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"}
    }
    env[key] = value
    proc = subprocess.run(
        [sys.executable, "-m", "warden.cli", "demo"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # Scheduler ticks travelled to the function and produced first versions.
    assert "tick  breast-cancer-risk-retrain" in out
    assert "tick  customer-segments-retrain" in out
    assert "breast-cancer-risk   v1: roc_auc=" in out
    assert "customer-segments    v1: silhouette=" in out
    # Forced runs through the Scheduler API, then rejections with reasons.
    assert "[jobs run breast-cancer-risk-retrain]" in out
    assert "v3: roc_auc=" in out
    assert "< floor 0.900: rejected" in out
    assert "silhouette" in out
    assert "< floor 0.250: rejected" in out
    # The monitors see the degradation; one asks for a retrain.
    assert "roc_auc on recent data" in out
    assert re.search(r"ran as Cloud Run job execution warden-monitor-\S+: 2 tasks", out)
    assert "DEGRADED" in out
    assert "→ retrain requested by the monitor: v4" in out
    # Serving: the example app answers with customer-segments' champion; the monitor reads
    # the prediction log, sees the shifted traffic, asks for a retrain that is promoted, and
    # the app swaps to it while the traffic goes on: no failed request.
    assert "customer-segments    watches what its app serves" in out
    assert re.search(r"monitor on \d+ served rows: DATASET DRIFT", out)
    assert re.search(r"retrain requested by the monitor: v4: silhouette=\S+ .*PROMOTED", out)
    served = r"serving: \d+ requests to the example app, 0 failed, answered by v2 → v4"
    assert re.search(served, out)
    assert "(hot swap v2 → v4)" in out
    # Metric → incident → route → receiver, and model events → receivers.
    assert "slack  ← [FIRING:1] model-degraded" in out
    assert "slack  ← [FIRING:1] ModelDriftDetected" in out
    assert "notifications (every alert group, HMAC-signed webhook)" in out
    # Rollback, health and metrics read from the outside, and a summary.
    assert "rollback → v2" in out
    assert "GET health?deep=true → 200 ok" in out
    assert "model/roc_auc     breast-cancer-risk   v1=" in out
    assert "champion v2" in out
    assert "Demo finished" in out
    assert _processes_with(marker) == []
