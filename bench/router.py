"""Benchmark: route_alerts' sustained webhook throughput and latency on this machine.

    make bench-router        (or: .venv/bin/python bench/router.py [--seconds 20] [--clients 8])

The real function under functions-framework (gunicorn), its state in fake-gcs-server, a local
receiver capturing notifications. Clients POST Cloud Monitoring 1.2 incidents (open and close,
spread over 50 groups) for a fixed time. Baseline in the same run: a trivial functions-framework
HTTP function answering {"ok": true}, so the ratio shows what routing costs. Prints a table
and, last, one JSON line with keys rps, p50_ms, p99_ms, errors.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

TOKEN = "bench-token"
TRIVIAL = """
import functions_framework

@functions_framework.http
def ping(request):
    return {"ok": True}
"""


def _receiver() -> tuple[ThreadingHTTPServer, list[int]]:
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            count[0] += 1
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, count


def _load(url: str, payloads: list[dict], seconds: float, clients: int) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        session = requests.Session()
        i = offset
        while time.monotonic() < stop:
            body = payloads[i % len(payloads)]
            i += clients
            t0 = time.perf_counter()
            try:
                status = session.post(url, json=body, timeout=30).status_code
            except requests.RequestException:
                status = 0
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
        "errors": errors[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    from warden.config import AlertPolicy
    from warden_local.gcs import StorageEmulator
    from warden_local.policies import incident_payload
    from warden_local.process import FunctionServer

    receiver, delivered = _receiver()
    servers: list[FunctionServer] = []
    with StorageEmulator() as gcs, tempfile.TemporaryDirectory() as tmp:
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.host
        from google.cloud import storage

        storage.Client(project="bench").create_bucket("bench-registry")
        raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
        raw["alerting"] = {
            "receivers": [
                {
                    "name": "hook",
                    "webhook": {"url_env": "BENCH_HOOK_URL", "secret_env": "BENCH_HOOK_SECRET"},
                }
            ],
            "route": {
                "receiver": "hook",
                "group_by": ["model"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "4h",
            },
        }
        config = Path(tmp) / "warden.yaml"
        config.write_text(yaml.safe_dump(raw))
        trivial = Path(tmp) / "main.py"
        trivial.write_text(TRIVIAL)
        env = {
            **os.environ,
            "WARDEN_REGISTRY_BUCKET": "bench-registry",
            "WARDEN_CONFIG": str(config),
            "WARDEN_PROJECT": "bench",
            "WARDEN_METRICS": "off",
            "WARDEN_WEBHOOK_TOKEN": TOKEN,
            "BENCH_HOOK_SECRET": "s",
            "BENCH_HOOK_URL": f"http://127.0.0.1:{receiver.server_port}/",
            "WARDEN_LOG_LEVEL": "WARNING",
        }
        try:
            ping = FunctionServer(trivial, "ping", signature="http", env=env)
            router = FunctionServer(
                ROOT / "functions/route_alerts/main.py", "route_alerts", signature="http", env=env
            )
            for server in (ping, router):
                servers.append(server.start(timeout=60))
            policy = AlertPolicy(name="bench", metric="drift/share", threshold=0.5)
            now = int(time.time())
            payloads = [
                incident_payload(
                    policy,
                    project="bench",
                    incident_id=f"i{k}",
                    state=state,
                    started_at=now,
                    ended_at=now + 1 if state == "closed" else None,
                    value=0.9,
                    metric_labels={"model": f"m{k % 50}"},
                    resource_type="global",
                    resource_labels={"project_id": "bench"},
                )
                for k in range(500)
                for state in ("open", "closed")
            ]
            base = _load(ping.url, [{}], args.seconds / 2, args.clients)
            routed = _load(
                f"{router.url}?auth_token={TOKEN}",
                payloads,
                args.seconds,
                args.clients,
            )
        finally:
            for server in servers:
                server.stop()
            receiver.shutdown()
    print(f"{'':<22}{'requests':>9}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, r in (("trivial function", base), ("route_alerts", routed)):
        print(
            f"{name:<22}{r['requests']:>9}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}"
            f"{r['p99_ms']:>9.1f}{r['errors']:>8}"
        )
    print(
        f"routing costs {base['rps'] / routed['rps']:.1f}x the trivial function's time per "
        f"request; {delivered[0]} notifications reached the receiver "
        f"({args.clients} clients, {args.seconds:.0f} s, 2 cores, load "
        f"{os.getloadavg()[0]:.2f})"
    )
    print(
        json.dumps(
            {
                "rps": round(routed["rps"], 1),
                "p50_ms": round(routed["p50_ms"], 1),
                "p99_ms": round(routed["p99_ms"], 1),
                "errors": routed["errors"],
                "requests": routed["requests"],
                "baseline_rps": round(base["rps"], 1),
                "notifications": delivered[0],
                "clients": args.clients,
            }
        )
    )


if __name__ == "__main__":
    main()
