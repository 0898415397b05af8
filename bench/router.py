"""Benchmark: route_alerts' sustained webhook throughput and latency on this machine, and how
it holds up as the number of existing aggregation groups grows.

    make bench-router        (or: .venv/bin/python bench/router.py [--seconds 20] [--clients 8]
                                  [--groups 5000])

The real function under functions-framework (gunicorn), its state in fake-gcs-server, a local
receiver capturing notifications. Clients POST Cloud Monitoring 1.2 incidents (open and close,
spread over 50 groups) for a fixed time. This load runs twice, each time on fresh state (its own
fake-gcs-server and router): once with 50 and once with ``--groups`` existing groups, seeded
beforehand as the router leaves them (one firing alert, notified; a ``due`` marker an hour
ahead) and distinct from the load's groups. The router's work per call should not grow with the
number of groups, so the two rates should be close. Baseline in the same run: a trivial
functions-framework HTTP function answering {"ok": true}, so the ratio shows what routing costs.
Prints a table and, last, one JSON line with keys rps, p50_ms, p99_ms, errors, requests (the
``--groups`` run), rps_50_groups, p99_ms_50_groups, baseline_rps, notifications, clients, groups.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local"))

TOKEN = "bench-token"
BUCKET = "bench-registry"
#: The load's groups (model m0..m49); seeded groups are s0..s<N-1>, warm-up uses its own.
LOAD_GROUPS = 50
SEED_THREADS = 16
WARMUP_REQUESTS = 16
TRIVIAL = """
import functions_framework

@functions_framework.http
def ping(request):
    return {"ok": True}
"""


def _receiver() -> tuple[ThreadingHTTPServer, list[int]]:
    count = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                count[0] += 1
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, count


def _load(
    url: str, payloads: list[dict], seconds: float, clients: int, *, max_requests: int = 0
) -> dict:
    """POST ``payloads`` round robin from ``clients`` threads for ``seconds`` (or, with
    ``max_requests``, that many requests in all)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        session = requests.Session()
        i = offset
        while (i < max_requests) if max_requests else (time.monotonic() < stop):
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


def _incident(policy: Any, model: str, k: int, state: str, now: int) -> dict:
    from warden_local.policies import incident_payload

    return incident_payload(
        policy,
        project="bench",
        incident_id=f"i-{model}-{k}",
        state=state,
        started_at=now,
        ended_at=now + 1 if state == "closed" else None,
        value=0.9,
        metric_labels={"model": model},
        resource_type="global",
        resource_labels={"project_id": "bench"},
    )


def _seed(host: str, config: Any, policy: Any, groups: int, now: float) -> float:
    """Write ``groups`` groups (models s0..) into BUCKET as the router leaves one that notified
    its one firing alert an hour ago: the group object and a ``due`` marker an hour ahead (its
    next wake-up). Seconds taken."""
    from google.cloud import storage

    from warden.alerts import alert_from_incident, group_id, route_alert
    from warden.alerts.state import DUE, GROUPS, _apply, _group_meta, _new_group, _set_timings
    from warden.store import gcs

    os.environ["STORAGE_EMULATOR_HOST"] = host
    local = threading.local()
    seen_at, notified_at = now - 3660, now - 3600
    minute = int((now + 3600) // 60)

    def write(k: int) -> None:
        bucket = getattr(local, "bucket", None)
        if bucket is None:  # one client (one connection pool) per thread
            bucket = local.bucket = storage.Client(project="bench").bucket(BUCKET)
        alert = alert_from_incident(
            _incident(policy, f"s{k}", k, "open", int(seen_at)), received_at=seen_at
        )
        for match in route_alert(alert, config):
            key = match.group_key(alert)
            gid = group_id(key)
            meta = _group_meta(key, match, alert)
            state = _new_group(meta, seen_at)
            _set_timings(state, meta)
            _apply(state, alert, False, False, seen_at)
            state.update(
                seq=1,
                last_notified_at=notified_at,
                notified={alert.fingerprint: "firing"},
                updated_at=notified_at,
                updated_by="bench-seed",
            )
            bucket.blob(f"{GROUPS}{gid}.json").upload_from_string(
                gcs.dumps(state), content_type=gcs.JSON_TYPE
            )
            bucket.blob(f"{DUE}{minute:010d}/{gid}").upload_from_string(
                b"", content_type="text/plain"
            )

    t0 = time.monotonic()
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(write, range(groups)))  # (list: re-raises a failed write)
    return time.monotonic() - t0


def _routed_run(
    *,
    groups: int,
    env: dict[str, str],
    config: Any,
    policy: Any,
    payloads: list[dict],
    warmup: list[dict],
    seconds: float,
    clients: int,
    log_path: Path,
    delivered: Callable[[], int],
) -> dict:
    """The load against a router of its own, on fresh state holding ``groups`` groups."""
    from google.cloud import storage

    from warden_local.gcs import StorageEmulator
    from warden_local.process import FunctionServer

    with StorageEmulator() as gcs_server, log_path.open("wb") as log:
        os.environ["STORAGE_EMULATOR_HOST"] = gcs_server.host
        storage.Client(project="bench").create_bucket(BUCKET)
        seeded_in = _seed(gcs_server.host, config, policy, groups, time.time())
        router = FunctionServer(
            ROOT / "functions/route_alerts/main.py",
            "route_alerts",
            signature="http",
            log=log,
            env={
                **env,
                "STORAGE_EMULATOR_HOST": gcs_server.host,
                # As deployed: route_alerts takes request concurrency 16 and functions-framework's
                # gunicorn serves THREADS requests at once, set to it (terraform/functions.tf;
                # docs/decisions.md, "Router concurrency"). Its default, 4 x cores, is not that.
                "THREADS": "16",
            },
        )
        try:
            router.start(timeout=60)
            url = f"{router.url}?auth_token={TOKEN}"
            # The first requests create the runtime, storage client and receiver sessions.
            _load(url, warmup, 0.0, 1, max_requests=len(warmup))
            _load(url, warmup, 0.0, clients, max_requests=WARMUP_REQUESTS)
            before = delivered()
            result = _load(url, payloads, seconds, clients)
            result["notifications"] = delivered() - before
        finally:
            router.stop()
    result["groups"] = groups
    result["seeded_s"] = seeded_in
    if result["errors"]:
        lines = log_path.read_text(errors="replace").splitlines()
        print(f"router log ({log_path}), last lines:", *lines[-20:], sep="\n", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--groups", type=int, default=5000)
    args = parser.parse_args()

    from warden.config import AlertPolicy
    from warden.config.alerting import parse_alerting
    from warden_local.process import FunctionServer

    receiver, delivered = _receiver()
    with tempfile.TemporaryDirectory() as tmp:
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
        alerting = parse_alerting(raw["alerting"], str(config))
        trivial = Path(tmp) / "main.py"
        trivial.write_text(TRIVIAL)
        env = {
            **os.environ,
            "WARDEN_REGISTRY_BUCKET": BUCKET,
            "WARDEN_CONFIG": str(config),
            "WARDEN_PROJECT": "bench",
            "WARDEN_METRICS": "off",
            "WARDEN_WEBHOOK_TOKEN": TOKEN,
            "BENCH_HOOK_SECRET": "s",
            "BENCH_HOOK_URL": f"http://127.0.0.1:{receiver.server_port}/",
            "WARDEN_LOG_LEVEL": "WARNING",
        }
        policy = AlertPolicy(name="bench", metric="drift/share", threshold=0.5)
        now = int(time.time())
        payloads = [
            _incident(policy, f"m{k % LOAD_GROUPS}", k, state, now)
            for k in range(500)
            for state in ("open", "closed")
        ]
        warmup = [
            _incident(policy, "warmup", k, state, now)
            for k in range(4)
            for state in ("open", "closed")
        ]
        ping = FunctionServer(trivial, "ping", signature="http", env=env)
        try:
            ping.start(timeout=60)
            _load(ping.url, [{}], 0.0, 1, max_requests=5)
            base = _load(ping.url, [{}], args.seconds / 2, args.clients)
        finally:
            ping.stop()
        runs = [
            _routed_run(
                groups=groups,
                env=env,
                config=alerting,
                policy=policy,
                payloads=payloads,
                warmup=warmup,
                seconds=args.seconds,
                clients=args.clients,
                log_path=Path(tmp) / f"router-{groups}.log",
                delivered=lambda: delivered[0],
            )
            for groups in (50, args.groups)
        ]
    receiver.shutdown()
    small, large = runs
    print(f"{'':<28}{'requests':>9}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    rows = [("trivial function", base)] + [(f"route_alerts, {r['groups']} groups", r) for r in runs]
    for name, r in rows:
        print(
            f"{name:<28}{r['requests']:>9}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}"
            f"{r['p99_ms']:>9.1f}{r['errors']:>8}"
        )
    for r in runs:
        print(
            f"{r['groups']} groups: seeded in {r['seeded_s']:.1f} s; {r['notifications']} "
            f"notifications reached the receiver under load"
        )
    print(
        f"with {large['groups']} groups the rate is {large['rps'] / small['rps']:.0%} of the "
        f"rate with {small['groups']} ({(large['rps'] / small['rps'] - 1) * 100:+.1f} %)"
    )
    print(
        f"routing costs {base['rps'] / large['rps']:.1f}x the trivial function's time per "
        f"request ({args.clients} clients, {args.seconds:.0f} s per run, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f})"
    )
    print(
        json.dumps(
            {
                "rps": round(large["rps"], 1),
                "p50_ms": round(large["p50_ms"], 1),
                "p99_ms": round(large["p99_ms"], 1),
                "errors": large["errors"],
                "requests": large["requests"],
                "rps_50_groups": round(small["rps"], 1),
                "p99_ms_50_groups": round(small["p99_ms"], 1),
                "baseline_rps": round(base["rps"], 1),
                "notifications": large["notifications"],
                "clients": args.clients,
                "groups": large["groups"],
            }
        )
    )


if __name__ == "__main__":
    main()
