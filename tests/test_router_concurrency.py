"""Ten route_alerts processes (functions-framework servers) receive the same burst of Cloud
Monitoring incidents at once; each group is notified exactly once, counted at the receiver."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

import incidents
from stack_process import wait_for
from warden.alerts.state import GROUPS as GROUPS_PREFIX
from warden.alerts.state import INBOX, PREFIX
from warden_local.process import FunctionServer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "concurrency-token"
PROCESSES = 10
GROUPS = 5
PER_GROUP = 4


def test_ten_routers_notify_each_group_exactly_once(
    tmp_path, gcs_emulator, bucket_names, storage_client
) -> None:
    received: list[dict] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    capture = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=capture.serve_forever, daemon=True).start()

    raw = copy.deepcopy(yaml.safe_load((ROOT / "warden.yaml").read_text()))
    raw["alerting"] = {
        "receivers": [
            {
                "name": "oncall",
                "webhook": {"url_env": "TEST_HOOK_URL", "secret_env": "TEST_HOOK_SECRET"},
            }
        ],
        "route": {
            "receiver": "oncall",
            "group_by": ["model"],
            "group_wait": "12s",  # well beyond the burst (~3 s): it holds every group back
            "group_interval": "1h",
            "repeat_interval": "4h",
        },
    }
    config = tmp_path / "warden.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": gcs_emulator.host,
        "WARDEN_REGISTRY_BUCKET": bucket_names["registry"],
        "WARDEN_ALERT_BUCKET": bucket_names["alerts"],
        "WARDEN_CONFIG": str(config),
        "WARDEN_PROJECT": "warden-test",
        "WARDEN_METRICS": "off",
        "WARDEN_WEBHOOK_TOKEN": TOKEN,
        "TEST_HOOK_SECRET": "s",
        "TEST_HOOK_URL": f"http://127.0.0.1:{capture.server_port}/",
    }
    servers = [
        FunctionServer(
            ROOT / "functions/route_alerts/main.py", "route_alerts", signature="http", env=env
        )
        for _ in range(PROCESSES)
    ]
    try:
        with ThreadPoolExecutor(max_workers=PROCESSES) as pool:
            list(pool.map(lambda server: server.start(timeout=90), servers))
            urls = [f"{server.url}?auth_token={TOKEN}" for server in servers]
            # Warm each router (runtime, config, clients) before the burst.
            list(pool.map(lambda url: requests.get(url, timeout=30), urls))
        started = int(time.time())

        def notification(g: int, i: int) -> dict:
            """A documented threshold notification (tests/incidents.py) for model m{g}."""
            payload = copy.deepcopy(incidents.THRESHOLD_OPEN)
            payload["incident"].update(incident_id=f"g{g}-i{i}", started_at=started)
            payload["incident"]["metric"]["labels"] = {"model": f"m{g}", "feature": f"f{i}"}
            return payload

        burst = [notification(g, i) for g in range(GROUPS) for i in range(PER_GROUP)]

        def deliver_everywhere(payloads: list[dict]) -> list[int]:
            with ThreadPoolExecutor(max_workers=PROCESSES * 2) as pool:
                futures = [
                    pool.submit(requests.post, url, json=p, timeout=60)
                    for p in payloads
                    for url in urls
                ]
                return [f.result().status_code for f in futures]

        assert set(deliver_everywhere(burst)) == {200}
        assert received == []  # group_wait holds every group back

        first: dict[str, float] = {}  # group -> its first change's time, once seen

        def all_due() -> bool:
            """Every group's group_wait is over, read from the routers' state itself: its
            first change, in the inbox or folded (the last group is first seen seconds after
            the first on a loaded machine). A group's first change is read once: after that
            the wait is on the clock alone, with no storage request."""
            if len(first) < GROUPS:
                seen: dict[str, float] = {}
                for blob in storage_client.list_blobs(bucket_names["alerts"], prefix=PREFIX):
                    name = blob.name
                    if name.startswith(INBOX):  # a change not folded into its group yet
                        group = name.removeprefix(INBOX).split("/")[0]
                        field = "received_at"
                    elif name.startswith(GROUPS_PREFIX):
                        group = name.removeprefix(GROUPS_PREFIX)
                        field = "first_seen"
                    else:
                        continue
                    key = group.removesuffix(".json")
                    if key in first:
                        continue
                    at = json.loads(blob.download_as_bytes())[field]
                    if at is not None:
                        seen[key] = min(float(at), seen.get(key, float(at)))
                first.update(seen)
            return len(first) == GROUPS and all(t + 12 <= time.time() for t in first.values())

        wait_for(all_due, 60, "every group's group_wait to pass", interval=0.1)
        # The same burst again (Monitoring redelivers): no new alert, but every process now
        # finds every group due and races to flush it. A router sends before it answers, so
        # every notification has reached the capture server once all calls have returned.
        assert set(deliver_everywhere(burst)) == {200}
        per_group = Counter(n["group_labels"]["model"] for n in received)
        assert per_group == {f"m{g}": 1 for g in range(GROUPS)}
        for note in received:
            assert len(note["alerts"]) == PER_GROUP  # one notification listing the whole group
    finally:
        with ThreadPoolExecutor(max_workers=PROCESSES) as pool:
            list(pool.map(lambda server: server.stop(), servers))
        capture.shutdown()
