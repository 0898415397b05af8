"""``warden demo`` (``make demo``): the whole system on the local cloud, explained as it runs.

1. ``warden local up`` in-process: fake-gcs-server, the Pub/Sub emulator with Terraform's push
   subscriptions, the Scheduler and Monitoring stand-ins, and one functions-framework process
   per function.
2. Example data is seeded; the Scheduler's virtual clock is set just before the models' retrain
   slots and runs fast, so real cron ticks travel Scheduler → Pub/Sub → push subscription →
   function.
3. A week later, fresh data, ``jobs run`` through the Scheduler API: new champions.
4. The data goes bad: retrains are rejected by their gates, with the reasons.
5. Serving: the example app (examples/serving_app) answers with customer-segments' champion
   and logs every prediction; its traffic shifts; the monitor, reading the prediction log
   (this run's copy of warden.yaml sets ``drift.source: predictions`` and ``retrain_on_drift``
   for that model), asks for a retrain; the new champion is promoted and the app swaps to it
   while the traffic goes on.
6. Alerts reach the receivers; an operator rolls one model back; health and metrics are read
   from the outside.
Everything it starts, it stops; the summary says what happened.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from warden_local.stack import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _step(text: str) -> None:
    click.secho(f"\n▶ {text}", bold=True)


def _info(text: str) -> None:
    click.echo(f"  {text}")


def plan_clock(
    specs: list[Any], now: datetime, *, real_seconds: float = 10.0
) -> tuple[datetime, float]:
    """A virtual start just before a retrain slot, and a speed at which every retrain job
    fires once within about ``real_seconds``: try each job's next slot as the anchor and keep
    the one after which all jobs fire soonest."""
    from croniter import croniter

    def next_fire(spec: Any, after: datetime) -> datetime:
        local = after.astimezone(ZoneInfo(spec.timezone))
        return croniter(spec.cron, local).get_next(datetime).astimezone(UTC)

    best: tuple[timedelta, datetime] | None = None
    for anchor_spec in specs:
        start = next_fire(anchor_spec, now) - timedelta(seconds=5)
        span = max(next_fire(s, start) - start for s in specs)
        if best is None or span < best[0]:
            best = (span, start)
    assert best is not None
    span, start = best
    return start, max(60.0, span.total_seconds() / real_seconds)


def _describe(manifest: dict[str, Any], champion: int | None) -> str:
    gate = manifest["gate"]
    metric = gate["metric"]
    value = manifest["metrics"]["candidate"].get(metric)
    verdict = (
        "PROMOTED"
        if champion == manifest["version"]
        else "passed, not promoted"
        if gate["passed"]
        else "REJECTED"
    )
    return (
        f"v{manifest['version']}: {metric}={value:.4f} on {manifest['data']['rows']} rows "
        f"→ {verdict}"
    )


def run_demo(*, keep: bool = False) -> int:
    from warden import runtime
    from warden.config.schedules import job_specs
    from warden.errors import WardenError
    from warden.settings import Settings
    from warden_local.examples import seed_examples
    from warden_local.stack import LocalStack

    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="warden-demo-"))
    config_path = _demo_config(run_dir)
    from warden.config import load_config

    config = load_config(config_path)
    retrain_jobs = [s for s in job_specs(config) if s.kind == "retrain"]
    clock_start, speed = plan_clock(retrain_jobs, datetime.now(UTC))
    click.secho(
        "Warden demo: scheduled retrains on the local cloud, gates, registry, rollback", bold=True
    )
    _step("Starting the local cloud")
    stack = LocalStack(
        config_path=config_path,
        run_dir=run_dir,
        speed=speed,
        clock_start=clock_start,
        progress=lambda m: _info(f"… {m}"),
        before_scheduler=_seed_week_one,
    )
    try:
        stack.start()
        for name, value in sorted(stack.endpoints.items()):
            _info(f"{name:<11} {value}")
        for name, url in sorted(stack.function_urls.items()):
            _info(f"{name:<11} {url} (functions-framework)")
        rt = runtime.build(Settings.from_env(stack.client_env()))
        registry = rt.registry()
        scheduler = rt.clients.scheduler
        today = datetime.now(UTC).date()

        _step("Week 1: data has landed; the Scheduler's retrain ticks fire")
        _info(f"seeded 7 daily partitions ending {today} for both models before the first tick")
        _info(f"virtual clock starts {clock_start:%a %Y-%m-%d %H:%M:%S}Z and runs ×{speed:.0f}")
        for spec in retrain_jobs:
            name = spec.name(stack.project, stack.location)
            job = wait_until(
                lambda n=name: (lambda j: j if j.last_attempt_time else None)(
                    scheduler.get_job(name=n)
                ),
                timeout=90,
                what=f"{spec.job_id} to tick",
            )
            scheduler.pause_job(name=name)  # one tick each is enough for the demo
            tick = job.last_attempt_time.astimezone(ZoneInfo(spec.timezone))
            _info(
                f"tick  {spec.job_id} ({spec.cron!r} {spec.timezone}) at "
                f"{tick:%a %H:%M %Z} → Pub/Sub → push subscription → retrain_model; job paused"
            )
        for spec in retrain_jobs:
            manifest = _wait_done(rt, spec.model, 1, timeout=120)
            _info(f"{spec.model:<20} {_describe(manifest, registry.resolve(spec.model))}")

        for spec in job_specs(config):
            if spec.kind != "retrain":  # the monitors run on demand below, not on the clock
                scheduler.pause_job(name=spec.name(stack.project, stack.location))

        _step("Week 2: fresh data; operator runs the jobs now (Scheduler API :run)")
        seed_examples(
            rt.clients.storage,
            bucket=stack.data_bucket,
            end=today,
            days=7,
            customer_rows=3000,
            seed=2,
        )
        _run_and_show(rt, stack, retrain_jobs, version=2, force="job")

        _step("Week 3: the customer mix shifts and 35% of risk labels arrive corrupted")
        seed_examples(
            rt.clients.storage,
            bucket=stack.data_bucket,
            end=today,
            days=7,
            customer_rows=3000,
            seed=3,
            shift=1.0,
            label_noise=0.35,
        )
        _run_and_show(rt, stack, retrain_jobs, version=3, force="manual")
        _monitor_and_show(rt, stack, config)
        swap = _serving_and_show(rt, stack, config, run_dir)
        _alerts_and_show(rt, stack, config)

        broke = f"v{registry.resolve('customer-segments')} segments broke campaign targeting"
        _step(f'Operator rolls back customer-segments ("{broke}")')
        state = registry.rollback("customer-segments", actor="demo-operator", reason=broke)
        _info(f"champion v{state.previous_version} → v{state.version}")
        for h in registry.history("customer-segments"):
            _info(f"history #{h.seq}: {h.action:<8} → v{h.version}  ({h.actor}: {h.reason})")

        _housekeeping_and_show(rt, stack, config)

        _step("From the outside: health function and Cloud Monitoring")
        with urllib.request.urlopen(  # noqa: S310 - loopback URL we started
            stack.function_urls["health"] + "/?deep=true", timeout=60
        ) as resp:
            health = json.loads(resp.read())
            _info(f"GET health?deep=true → {resp.status} {health['status']}")
        for model, entry in sorted(health["models"].items()):
            _info(
                f"{model:<20} champion v{entry['champion']['version']} verified="
                f"{entry['verified']} loaded={entry.get('loaded')} last retrain "
                f"{entry['seconds_since_last_retrain']:.0f}s ago"
            )
        since = datetime.now(UTC) - timedelta(hours=1)
        for model, metric in (
            ("customer-segments", "model/silhouette"),
            ("breast-cancer-risk", "model/roc_auc"),
        ):
            points = rt.metrics().read(metric, labels={"model": model}, since=since)
            values = ", ".join(f"v{lb['version']}={v:.3f}" for lb, _, v in reversed(points))
            _info(f"{metric:<17} {model:<20} {values}")

        _step("Summary")
        for spec in retrain_jobs:
            versions = registry.versions(spec.model)
            marks = ", ".join(
                f"v{m['version']} {'✓' if m['gate']['passed'] else '✗'}" for m in versions
            )
            _info(f"{spec.model:<20} {marks}; champion v{registry.resolve(spec.model)}")
        if swap:
            _info(swap)
        _info(
            f"{_deliveries_summary(run_dir)}; logs in "
            f"{run_dir if keep else '(removed; --keep to retain)'}"
        )
    except (RuntimeError, TimeoutError, OSError, WardenError) as exc:
        click.secho(f"\ndemo failed: {exc}\nlogs: {run_dir}", fg="red", err=True)
        keep = True
        return 1
    finally:
        if "rt" in locals() and rt.clients._monitoring is not None:
            rt.clients._monitoring.transport.close()  # before its server goes away
        stack.stop()
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    click.secho(
        f"\nDemo finished in {time.monotonic() - started:.0f}s; every process it started "
        "has been stopped.",
        fg="green",
        bold=True,
    )
    return 0


def _deliveries_summary(run_dir: Path) -> str:
    """What the event functions logged per delivery, as Cloud Logging would show it."""
    from warden_local.pubsub import read_deliveries

    found = read_deliveries(*sorted(run_dir.glob("function-*.log")))
    outcomes = Counter(d["delivery"] for d in found)
    messages = len({d["message_id"] for d in found})
    detail = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
    return (
        f"{len(found)} deliveries through push subscriptions to the event functions "
        f"({messages} messages; {detail or 'none'})"
    )


def _housekeeping_and_show(rt: Any, stack: Any, config: Any) -> None:
    """Run each model's housekeeping job now, then rehearse a restore of its snapshot."""
    from warden.config.schedules import job_specs
    from warden.jobs.backup import list_snapshots, restore

    _step("Housekeeping: integrity sweep, snapshot, retention (Scheduler API :run)")
    taken = set()
    for spec in [s for s in job_specs(config) if s.kind == "housekeeping"]:
        before = (rt.ledger().status(spec.model, "housekeeping") or {}).get("last_run") or {}
        rt.clients.scheduler.run_job(name=spec.name(stack.project, stack.location))

        def finished(model: str = spec.model, before: dict = before) -> dict | None:
            run = (rt.ledger().status(model, "housekeeping") or {}).get("last_run") or {}
            return run if run and run.get("at") != before.get("at") else None

        try:
            run = wait_until(finished, timeout=60, what=f"{spec.job_id} to run")
        except TimeoutError:  # taken for a duplicate of a real slot's tick: ask explicitly
            _publish_job(rt, spec.model, "housekeeping")
            run = wait_until(finished, timeout=60, what=f"{spec.job_id} to run")
        _info(
            f"{spec.model:<20} {run.get('outcome')}: corrupt versions {run.get('corrupt')}, "
            f"snapshot {run.get('snapshot')}, retired {run.get('deleted_versions')}"
        )
        taken.add(run.get("snapshot"))
    for snap in [s for s in list_snapshots(rt) if s.id in taken]:
        report = restore(rt, snap.id, dry_run=True)
        present = len(report.by_status("present"))
        _info(
            f"restore rehearsal {snap.id}: {present}/{len(report.versions)} versions "
            f"already present, nothing would be overwritten (warden restore --dry-run)"
        )


def _publish_job(rt: Any, model: str, kind: str) -> None:
    from warden.config.schedules import TOPICS

    publisher = rt.clients.publisher
    topic = publisher.topic_path(rt.settings.project, TOPICS[kind])
    payload = {"schema": 1, "model": model, "reason": "manual"}
    publisher.publish(topic, json.dumps(payload).encode(), model=model, kind=kind).result(
        timeout=30
    )


def _run_and_show(rt: Any, stack: Any, specs: list[Any], *, version: int, force: str) -> None:
    """Trigger each retrain (Scheduler :run, or a manual request) and show the outcome."""
    registry = rt.registry()
    for spec in specs:
        if force == "job":
            rt.clients.scheduler.run_job(name=spec.name(stack.project, stack.location))
            how = f"jobs run {spec.job_id}"
        else:
            _publish_manual(rt, spec.model)
            how = f"warden retrain {spec.model}"
        try:
            manifest = _wait_done(rt, spec.model, version, timeout=90)
        except TimeoutError:
            if force != "job":
                raise
            # The forced run fell inside the 2-minute window of a real cron slot and was
            # (correctly) taken for that slot's duplicate tick: ask again explicitly.
            _publish_manual(rt, spec.model)
            how += " (deduplicated as a slot tick) + warden retrain"
            manifest = _wait_done(rt, spec.model, version, timeout=90)
        _info(f"{spec.model:<20} {_describe(manifest, registry.resolve(spec.model))}  [{how}]")
        if not manifest["gate"]["passed"]:
            for reason in manifest["gate"]["reasons"]:
                _info(f"{'':<22}· {reason}")


def _monitor_and_show(rt: Any, stack: Any, config: Any) -> None:
    """Run each model's monitor job through the Scheduler API and show what it found."""
    from warden.config.schedules import job_specs

    _step("Monitoring: the monitor jobs compare this week with the champions' profiles")
    for spec in [s for s in job_specs(config) if s.kind == "monitor"]:
        if config.model(spec.model).drift.source == "predictions":
            _info(f"{spec.model:<20} watches what its app serves: see Serving below")
            continue
        before = (rt.ledger().status(spec.model, "monitor") or {}).get("last_run") or {}
        versions_before = rt.registry().version_numbers(spec.model)
        rt.clients.scheduler.run_job(name=spec.name(stack.project, stack.location))

        prior_at = before.get("at")

        def finished(model: str = spec.model, prior: Any = prior_at) -> Any:
            run = (rt.ledger().status(model, "monitor") or {}).get("last_run") or {}
            return run if run.get("at") and run.get("at") != prior else None

        run = wait_until(finished, timeout=90, what=f"{spec.job_id}")
        folder = _latest_monitoring(rt, spec.model)
        summary = json.loads(
            rt.clients.storage.bucket(rt.settings.registry_bucket)
            .blob(folder + "drift.json")
            .download_as_bytes()
        )
        drift = summary["drift"]
        perf = summary.get("performance") or {}
        verdict = "DATASET DRIFT" if drift["dataset_drift"] else "no dataset drift"
        _info(
            f"{spec.model:<20} champion v{summary['version']}: {verdict} "
            f"(share {drift['drift_share']:.2f}; drifted: "
            f"{', '.join(drift['drifted'][:4]) or 'none'}"
            f"{'…' if len(drift['drifted']) > 4 else ''})"
        )
        if perf.get("current") is not None:
            _info(
                f"{'':<22}{perf['metric']} on recent data {perf['current']:.3f} vs "
                f"{perf['baseline']:.3f} at promotion → "
                f"{'DEGRADED' if perf['degraded'] else 'ok'}"
            )
        _info(
            f"{'':<22}report gs://{rt.settings.registry_bucket}/{folder}report.html "
            f"(run {run.get('run_id', '')[:8]})"
        )
        cfg = config.model(spec.model)
        if cfg.runners.monitor.runner != "function":
            handed = [
                r
                for r in rt.ledger().recent(spec.model, kind="monitor", limit=10)
                if r.get("status") == "dispatched"
            ]
            if handed:
                execution = str(handed[0].get("execution", "")).rsplit("/", 1)[-1]
                _info(
                    f"{'':<22}ran as Cloud Run job execution {execution}: "
                    f"{handed[0].get('tasks')} tasks, each its share of the files, merged"
                )
        if (perf.get("degraded") and cfg.drift.retrain_on_degradation) or (
            drift["dataset_drift"] and cfg.drift.retrain_on_drift
        ):
            version = max(versions_before, default=0) + 1
            manifest = _wait_done(rt, spec.model, version, timeout=90)
            _info(
                f"{'':<22}→ retrain requested by the monitor: "
                f"{_describe(manifest, rt.registry().resolve(spec.model))}"
            )


def _alerts_and_show(rt: Any, stack: Any, config: Any) -> None:
    """What the monitors' metrics and events turned into at the receivers."""
    from warden.config.alerting import parse_alerting
    from warden.config.schedules import ALERT_FLUSH

    routing = parse_alerting(config.alerting, "warden.yaml")
    wait = routing.tree.group_wait
    _step(f"Alerts: incidents and model events → route_alerts (group_wait {wait:.0f}s) → receivers")
    _info(
        "Monitoring stand-in evaluated the alert policies on the new points; model events "
        "arrived over Pub/Sub"
    )
    # Let every group's group_wait pass (most started during the monitor and serving steps),
    # then a Scheduler flush tick.
    wait_until(lambda: _group_waits_over(rt), timeout=60, interval=0.5, what="group_wait")
    rt.clients.scheduler.run_job(name=ALERT_FLUSH.name(stack.project, stack.location))
    received = stack.run_dir / "received.jsonl"

    def notes() -> list[dict[str, Any]]:
        if not received.exists():
            return []
        return [json.loads(line) for line in received.read_text().splitlines()]

    wait_until(lambda: len(notes()) >= 2, timeout=60, what="notifications at the receivers")
    time.sleep(1)
    audit = 0
    for note in notes():
        body = note["body"] if isinstance(note["body"], dict) else {}
        if note["path"] == "/slack":
            _info(f"slack  ← {str(body.get('text', '')).splitlines()[0][:88]}")
        else:
            audit += 1
    _info(f"audit  ← {audit} notifications (every alert group, HMAC-signed webhook)")
    muted = []
    for blob in rt.clients.storage.list_blobs(
        rt.settings.alert_state_bucket, prefix="_alerting/groups/"
    ):
        for alert in json.loads(blob.download_as_bytes()).get("alerts", {}).values():
            if alert.get("inhibited"):
                labels = alert["labels"]
                muted.append(f"{labels.get('alertname')} for {labels.get('model')}")
    if muted:
        _info(
            f"inhibited, not sent: {', '.join(sorted(set(muted)))} (the same model's "
            "model-degraded is firing)"
        )


def _group_waits_over(rt: Any) -> bool:
    """No alert group is still in its group_wait: read from the router's state, as `warden
    alerts` does. The router's timers are on real time."""
    now = time.time()
    views = rt.alert_state().groups_view(config=rt.alerting, now=now)
    waiting = [v.next_at for v in views if v.next_reason == "group_wait"]
    return all(at is None or at <= now for at in waiting)


#: The model the demo serves through examples/serving_app, monitored on what it served.
SERVED = "customer-segments"
#: The model whose monitor runs as a Cloud Run job (the job runner's story).
JOBBED = "breast-cancer-risk"
#: The demo's group_wait (warden.yaml ships 30s): long enough to show grouping, short enough
#: that the demo ends in under a minute.
DEMO_GROUP_WAIT = "5s"


def _demo_config(run_dir: Path) -> Path:
    """warden.yaml as shipped, but with SERVED monitored on its prediction log (``drift.source:
    predictions``) and retraining when that drifts (the serving step's story), JOBBED's
    monitor run handed to a Cloud Run job of two tasks (the job runner's), and the alert route's
    group_wait shortened to :data:`DEMO_GROUP_WAIT`."""
    import yaml

    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["models"][SERVED]["drift"].update(source="predictions", retrain_on_drift=True)
    # One model's monitor runs as a Cloud Run job of two tasks (the stand-in runs them).
    raw["models"][JOBBED]["runners"] = {"monitor": {"runner": "job", "tasks": 2}}
    # The groups open during the monitor and serving steps: a 30 s group_wait would hold the
    # story for half a minute at the alerts step. Routes without their own keep inheriting it.
    raw["alerting"]["route"]["group_wait"] = DEMO_GROUP_WAIT
    path = run_dir / "warden.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _serving_and_show(rt: Any, stack: Any, config: Any, run_dir: Path) -> str:
    """An app serves SERVED's champion; its traffic shifts; the monitor, reading the prediction
    log, sees the drift and asks for a retrain; the new champion is promoted and the app swaps
    to it while the traffic goes on. Returns the summary line."""
    import os
    import threading

    import requests

    from warden_local.examples import customer_frame, seed_examples
    from warden_local.process import FunctionServer

    cfg = config.model(SERVED)
    _step(
        f"Serving: an app answers with the champion of {SERVED}; its traffic shifts; the monitor "
        "reads what it served (drift.source: predictions)"
    )
    today = datetime.now(UTC).date()
    # This week's feed (what a retrain learns from) has moved the way the traffic has.
    seed_examples(
        rt.clients.storage,
        bucket=stack.data_bucket,
        end=today,
        days=7,
        customer_rows=3000,
        seed=4,
        shift=0.3,
        models=(SERVED,),
    )
    env = {
        **os.environ,
        **stack.client_env(),
        "WARDEN_SERVE_MODEL": SERVED,
        "SERVE_CHECK_INTERVAL": "1",
        "SERVE_FLUSH_SECONDS": "1",
        "THREADS": "8",
    }
    frame = customer_frame(2400, seed=5, shift=0.3)
    rows = [{f: float(v) for f, v in r.items()} for r in frame[cfg.features].to_dict("records")]
    answered: list[tuple[int, int]] = []  # (status, version) per request
    stop = threading.Event()
    with (
        (run_dir / "function-serving_app.log").open("wb") as log,
        FunctionServer(
            ROOT / "examples/serving_app/main.py", "serve", signature="http", env=env, log=log
        ) as app,
    ):
        url = app.url.rstrip("/")

        def health() -> dict[str, Any]:
            return dict(requests.get(f"{url}/health", timeout=30).json())

        first = health()
        _info(f"example app {url} (examples/serving_app): {SERVED} v{first['version']} loaded")

        def client(k: int) -> None:
            session = requests.Session()
            i = k
            while not stop.is_set():
                batch = [rows[(i * 40 + j) % len(rows)] for j in range(40)]
                try:
                    resp = session.post(f"{url}/predict", json={"rows": batch}, timeout=30)
                    version = int(resp.json().get("version", -1)) if resp.ok else -1
                    answered.append((resp.status_code, version))
                except requests.RequestException:
                    answered.append((0, -1))
                i += 2
                # Steady traffic, not a flood: ten requests a second per client keep the log
                # filling and the swap under load, and leave the machine to the rest of the story.
                stop.wait(0.1)

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in (0, 1)]
        for t in threads:
            t.start()
        try:
            wait_until(
                lambda: health()["prediction_log"]["written"] >= 1500,
                timeout=60,
                what="1,500 logged predictions",
            )
            _info(
                f"traffic: shifted customers, 40 rows a request; {len(answered)} requests so "
                "far, every row in the prediction log (predictions/customer-segments/dt=…)"
            )
            versions_before = rt.registry().version_numbers(SERVED)
            before = (rt.ledger().status(SERVED, "monitor") or {}).get("last_run") or {}
            _publish_job(rt, SERVED, "monitor")

            def monitored() -> Any:
                run = (rt.ledger().status(SERVED, "monitor") or {}).get("last_run") or {}
                return run if run.get("at") and run.get("at") != before.get("at") else None

            wait_until(monitored, timeout=90, what=f"{SERVED}'s monitor")
            folder = _latest_monitoring(rt, SERVED)
            summary = json.loads(
                rt.clients.storage.bucket(rt.settings.registry_bucket)
                .blob(folder + "drift.json")
                .download_as_bytes()
            )
            drift, pred = summary["drift"], summary.get("prediction_drift") or {}
            _info(
                f"monitor on {summary['window']['rows']} served rows: "
                f"{'DATASET DRIFT' if drift['dataset_drift'] else 'no dataset drift'} "
                f"(share {drift['drift_share']:.2f}); cluster shares moved "
                f"{pred.get('value', 0):.3f} (threshold {pred.get('threshold')}) → "
                f"{'prediction drift' if pred.get('drifted') else 'no prediction drift'}"
            )
            version = max(versions_before, default=0) + 1
            manifest = _wait_done(rt, SERVED, version, timeout=120)
            champion = rt.registry().resolve(SERVED)
            _info(f"→ retrain requested by the monitor: {_describe(manifest, champion)}")
            if champion == version:
                wait_until(
                    lambda: health()["version"] == version, timeout=60, what="the app's swap"
                )
                mark = len(answered)
                wait_until(lambda: len(answered) >= mark + 10, timeout=60, what="traffic on it")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        final = health()
    failed = sum(1 for status, _ in answered if status != 200)
    order: list[int] = []
    for _, v in answered:
        if v > 0 and (not order or order[-1] != v):
            order.append(v)
    swap = final["champion"].get("last_swap") or {}
    served = " → ".join(f"v{v}" for v in order)
    _info(
        f"{len(answered)} requests, {final['predictions']} predictions, {failed} failed; "
        f"answered by {served}"
        + (f"; swapped v{swap['from']} → v{swap['to']} without a restart" if swap else "")
    )
    return (
        f"serving: {len(answered)} requests to the example app, {failed} failed, answered by "
        f"{served}" + (f" (hot swap v{swap['from']} → v{swap['to']})" if swap else " (no swap)")
    )


def _latest_monitoring(rt: Any, model: str) -> str:
    names = sorted(
        b.name
        for b in rt.clients.storage.list_blobs(
            rt.settings.registry_bucket, prefix=f"{model}/monitoring/"
        )
        if b.name.endswith("/drift.json")
    )
    return names[-1].rsplit("/", 1)[0] + "/"


def _seed_week_one(stack: Any) -> None:
    """Runs inside ``LocalStack.start`` after the buckets exist and before the Scheduler ticks."""
    from google.cloud import storage

    from warden_local.examples import seed_examples

    client = storage.Client(project=stack.project)
    seed_examples(
        client,
        bucket=stack.data_bucket,
        end=datetime.now(UTC).date(),
        days=7,
        customer_rows=3000,
        seed=1,
    )


def _wait_done(rt: Any, model: str, version: int, *, timeout: float) -> dict[str, Any]:
    """Wait until the run that registered ``version`` has finished (promotion included)."""

    def done() -> dict[str, Any] | None:
        if version not in rt.registry().version_numbers(model):
            return None
        manifest = rt.registry().manifest(model, version)
        last = (rt.ledger().status(model, "retrain") or {}).get("last_run") or {}
        return manifest if last.get("run_id") == manifest["run_id"] else None

    return wait_until(done, timeout=timeout, what=f"{model} v{version}")


def _publish_manual(rt: Any, model: str) -> None:
    publisher = rt.clients.publisher
    topic = publisher.topic_path(rt.settings.project, rt.settings.retrain_topic)
    payload = {
        "schema": 1,
        "model": model,
        "reason": "manual",
        "as_of": datetime.now(UTC).date().isoformat(),
    }
    publisher.publish(topic, json.dumps(payload).encode(), model=model, kind="retrain").result(
        timeout=30
    )
