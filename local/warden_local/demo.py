"""``warden demo``: the whole retrain loop on local emulators, explained as it runs.

Starts fake-gcs-server and the Monitoring stand-in, seeds the two example models' data, then
delivers Eventarc-shaped Pub/Sub CloudEvents to the real ``retrain_model`` function (the
functions-framework app) as Cloud Scheduler would, three times over three weeks of data, checks
``health`` and finishes with a rollback. Everything it starts, it stops.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("customer-segments", "breast-cancer-risk")


def _step(text: str) -> None:
    click.secho(f"\n▶ {text}", bold=True)


def _info(text: str) -> None:
    click.echo(f"  {text}")


def _event(model: str, as_of: date, project: str) -> tuple[dict[str, str], bytes]:
    """A binary-mode CloudEvent exactly as Eventarc delivers a Pub/Sub message."""
    message_id = str(uuid.uuid4().int)[:16]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    payload = {
        "schema": 1,
        "model": model,
        "reason": "schedule",
        "as_of": as_of.isoformat(),
        "scheduled_time": f"{as_of.isoformat()}T03:00:00Z",
    }
    body = {
        "subscription": f"projects/{project}/subscriptions/eventarc-retrain",
        "message": {
            "data": base64.b64encode(json.dumps(payload).encode()).decode(),
            "attributes": {"model": model, "kind": "retrain"},
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": now,
            "publish_time": now,
        },
    }
    headers = {
        "ce-id": message_id,
        "ce-specversion": "1.0",
        "ce-time": now,
        "ce-source": f"//pubsub.googleapis.com/projects/{project}/topics/retrain-requests",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "Content-Type": "application/json",
    }
    return headers, json.dumps(body).encode()


def _describe(manifest: dict[str, Any], champion: int | None) -> str:
    gate = manifest["gate"]
    metric = gate["metric"]
    value = manifest["metrics"]["candidate"].get(metric)
    verdict = (
        "PROMOTED"
        if champion == manifest["version"]
        else ("passed (not promoted)" if gate["passed"] else "REJECTED")
    )
    return (
        f"v{manifest['version']}: {metric}={value:.4f} on {manifest['data']['rows']} rows "
        f"→ {verdict}"
    )


def run_demo(*, keep: bool = False) -> int:
    from warden_local.gcs import StorageEmulator
    from warden_local.monitoring import MonitoringStandIn

    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="warden-demo-"))
    project = "warden-demo"
    summary: list[tuple[str, str]] = []
    click.secho(
        "Warden demo: scheduled retrains, evaluation gates, registry, health, rollback", bold=True
    )
    _step("Starting local cloud (fake-gcs-server, Monitoring stand-in)")
    gcs_log = (run_dir / "fake-gcs-server.log").open("wb")
    gcs = StorageEmulator(log=gcs_log)
    monitoring = MonitoringStandIn(check_time_window=False)
    try:
        gcs.start()
        monitoring.start()
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.host
        _info(f"Cloud Storage  {gcs.host} (fake-gcs-server, memory backend)")
        _info(f"Monitoring     {monitoring.endpoint} (gRPC MetricService stand-in)")
        _info(f"run folder     {run_dir}")

        from functions_framework import create_app
        from google.cloud import storage

        from warden import runtime
        from warden.examples import breast_cancer_frame, customer_frame, write_partitions
        from warden.logs import setup_logging
        from warden.settings import Settings

        settings = Settings(
            project=project,
            config_path=ROOT / "warden.yaml",
            registry_bucket="warden-registry",
            data_bucket="warden-data",
            monitoring_endpoint=monitoring.endpoint,
            code_version="demo",
        )
        client = storage.Client(project=project)
        for name in (settings.registry_bucket, settings.data_bucket):
            client.create_bucket(name)
        # Function logs (structured JSON) go to a file, as Cloud Logging would collect them.
        log_file = (run_dir / "functions.log").open("w")
        setup_logging(project=project, stream=log_file)
        rt = runtime.build(settings, storage=client)
        runtime.install(rt)
        app = create_app(
            "retrain_model", str(ROOT / "functions/retrain_model/main.py"), "cloudevent"
        ).test_client()

        week1 = date(2026, 11, 8)
        weeks = [week1, week1 + timedelta(days=7), week1 + timedelta(days=14)]
        plan = [
            ("Week 1: first scheduled retrain of both models", 0.0, 0.0),
            ("Week 2: retrain on a fresh week of similar data", 0.0, 0.0),
            (
                "Week 3: the customer mix shifts, and 35% of the new risk labels arrive corrupted",
                1.0,
                0.35,
            ),
        ]
        for i, ((title, shift, noise), as_of) in enumerate(zip(plan, weeks, strict=True)):
            _step(title)
            write_partitions(
                client,
                bucket=settings.data_bucket,
                prefix="customers",
                frame=customer_frame(3000, seed=10 + i, shift=shift),
                fmt="parquet",
                end=as_of,
                days=7,
            )
            write_partitions(
                client,
                bucket=settings.data_bucket,
                prefix="breast-cancer",
                frame=breast_cancer_frame(label_noise=noise, seed=i),
                fmt="csv",
                end=as_of,
                days=7,
            )
            _info(f"seeded 7 daily partitions ending {as_of} for both models")
            for model in MODELS:
                t0 = time.monotonic()
                headers, body = _event(model, as_of, project)
                resp = app.post("/", data=body, headers=headers)
                if resp.status_code != 200:
                    click.secho(f"  {model}: function answered {resp.status_code}", fg="red")
                    return 1
                latest = rt.registry().manifest(model, "latest")
                champion = rt.registry().resolve(model)
                _info(f"{model:<20} {_describe(latest, champion)}  ({time.monotonic() - t0:.1f}s)")
                if not latest["gate"]["passed"]:
                    for reason in latest["gate"]["reasons"]:
                        _info(f"{'':<22}· {reason}")
            # Cloud Scheduler delivers at least once: redeliver the last message.
            if i == 0:
                resp = app.post("/", data=body, headers=headers)
                _info(
                    f"redelivered the same Pub/Sub message → {resp.status_code}, "
                    f"versions still {rt.registry().version_numbers(MODELS[-1])}"
                )

        _step("Health check (HTTP function)")
        health = create_app("health", str(ROOT / "functions/health/main.py"), "http")
        resp = health.test_client().get("/?deep=true")
        body = resp.get_json()
        _info(f"GET /?deep=true → {resp.status_code} status={body['status']}")
        for model, entry in body["models"].items():
            _info(
                f"{model:<20} champion v{entry['champion']['version']} "
                f"verified={entry['verified']} loaded={entry.get('loaded')}"
            )

        _step("Operator rolls back customer-segments: campaigns still target last week's segments")
        state = rt.registry().rollback(
            "customer-segments",
            reason="campaigns still target last week's segments",
            actor="demo-operator",
        )
        _info(f"champion v{state.previous_version} → v{state.version}")
        for h in rt.registry().history("customer-segments"):
            _info(f"history #{h.seq}: {h.action:<8} → v{h.version} ({h.reason})")

        _step("Summary")
        for model in MODELS:
            manifests = rt.registry().versions(model)
            champion = rt.registry().resolve(model)
            summary.append(
                (
                    model,
                    ", ".join(
                        f"v{m['version']}={'✓' if m['gate']['passed'] else '✗'}" for m in manifests
                    )
                    + f"; champion v{champion}",
                )
            )
        for model, line in summary:
            _info(f"{model:<20} {line}")
        series = {ts.metric.type for req in monitoring.requests for ts in req.time_series}
        names = ", ".join(sorted(s.rsplit("/warden/", 1)[-1] for s in series))
        points = sum(len(r.time_series) for r in monitoring.requests)
        _info(f"metrics written: {points} points in {len(series)} custom metrics ({names})")
        _info(f"function logs: {run_dir / 'functions.log'}")
        click.secho(
            f"\nDemo finished in {time.monotonic() - started:.0f}s. "
            "Everything it started has been stopped.",
            fg="green",
            bold=True,
        )
        return 0
    finally:
        from warden import runtime as _rt

        _rt.install(None)
        monitoring.stop()
        gcs.stop()
        gcs_log.close()
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
