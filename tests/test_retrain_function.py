"""retrain_model end to end: a real functions-framework app receiving Eventarc-shaped binary
CloudEvents, a real fake-gcs-server, and the Monitoring stand-in behind the real client."""

from __future__ import annotations

import copy
import io
import json
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import yaml
from functions_framework import create_app

from events import binary_headers, envelope, retrain_payload
from warden.config import parse_config
from warden.jobs.messages import decode_pubsub_event, parse_run_request
from warden.jobs.retrain import retrain
from warden.logs import setup_logging
from warden.store.registry import ARTIFACT
from warden_local.examples import customer_frame, write_partitions
from warden_local.monitoring import MonitoringStandIn

ROOT = Path(__file__).resolve().parents[1]
RAW_CONFIG = yaml.safe_load((ROOT / "warden.yaml").read_text())
AS_OF = date(2026, 11, 20)
SEG, RISK = "customer-segments", "breast-cancer-risk"


@pytest.fixture(scope="module")
def monitoring() -> Iterator[MonitoringStandIn]:
    with MonitoringStandIn() as standin:
        yield standin


@pytest.fixture
def rt(seed, make_runtime, monitoring):
    seed(days=14, customer_rows=2400, seed=1, models=(SEG,))
    seed(days=10, models=(RISK,))
    return make_runtime(metrics_enabled=True, monitoring_endpoint=monitoring.endpoint)


@pytest.fixture
def client():
    app = create_app("retrain_model", str(ROOT / "functions/retrain_model/main.py"), "cloudevent")
    return app.test_client()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = setup_logging(project="warden-test", stream=stream)
    yield stream
    import logging

    logging.getLogger().removeHandler(handler)


def post(client, payload, **kw):
    body = envelope(payload, **kw)
    return client.post("/", data=json.dumps(body), headers=binary_headers(body))


def _versions(rt, model: str) -> list[int]:
    return rt.registry().version_numbers(model)


def _all_objects(rt) -> list[str]:
    return sorted(b.name for b in rt.clients.storage.list_blobs(rt.settings.registry_bucket))


def test_first_retrain_registers_and_promotes_both_models(rt, client, monitoring) -> None:
    before = len(monitoring.requests)
    for model in (SEG, RISK):
        resp = post(client, retrain_payload(model, as_of=AS_OF.isoformat()))
        assert resp.status_code == 200, resp.data
        assert _versions(rt, model) == [1]
        manifest = rt.registry().manifest(model, "champion")
        assert manifest["version"] == 1
        assert manifest["gate"]["passed"] is True
        assert any("first version" in r for r in manifest["gate"]["reasons"])
        assert set(manifest["files"]) == {ARTIFACT, "profile.json", "report.html"}
        assert manifest["data"]["rows"] > 0
        assert manifest["data"]["file_count"] > 0
        assert len(manifest["data"]["files_sha256"]) == 64
        estimator, _ = rt.registry().load(model)
        assert hasattr(estimator, "predict")
    seg = rt.registry().manifest(SEG)
    assert seg["metrics"]["candidate"]["silhouette"] > 0.4
    assert seg["evaluation"]["candidate"]["exact"] is True
    risk = rt.registry().manifest(RISK)
    assert risk["metrics"]["candidate"]["roc_auc"] > 0.95
    # Metrics reached the Monitoring stand-in as real CreateTimeSeries requests.
    sent = monitoring.requests[before:]
    types = {ts.metric.type for req in sent for ts in req.time_series}
    assert {
        "custom.googleapis.com/warden/model/silhouette",
        "custom.googleapis.com/warden/model/roc_auc",
        "custom.googleapis.com/warden/run/success",
        "custom.googleapis.com/warden/retrain/duration",
    } <= types
    auc = monitoring.points("custom.googleapis.com/warden/model/roc_auc", model=RISK)
    assert auc
    assert auc[-1][2] == pytest.approx(risk["metrics"]["candidate"]["roc_auc"])
    status = rt.ledger().status(RISK, "retrain")
    assert status["last_success"]["version"] == 1


def test_twenty_redeliveries_create_exactly_one_version(rt, client) -> None:
    payload = retrain_payload(RISK, as_of=AS_OF.isoformat())
    codes = [post(client, payload, message_id="same-message").status_code for _ in range(20)]
    assert codes == [200] * 20
    assert _versions(rt, RISK) == [1]
    assert len(rt.registry().history(RISK)) == 1


def test_concurrent_redeliveries_create_exactly_one_version(rt) -> None:
    """Redeliveries racing in threads: one trains, the others retry (5xx) or find it done."""
    body = envelope(retrain_payload(RISK, as_of=AS_OF.isoformat()), message_id="dup")
    codes: list[int] = []
    lock = threading.Lock()

    def deliver() -> None:
        app = create_app(
            "retrain_model", str(ROOT / "functions/retrain_model/main.py"), "cloudevent"
        )
        resp = app.test_client().post("/", data=json.dumps(body), headers=binary_headers(body))
        with lock:
            codes.append(resp.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _versions(rt, RISK) == [1]
    assert 200 in codes
    assert set(codes) <= {200, 500}


def test_racing_retrains_get_distinct_versions_and_a_whole_champion(rt) -> None:
    outcomes = []
    errors: list[BaseException] = []

    def run(message_id: str) -> None:
        body = envelope(retrain_payload(SEG, as_of=AS_OF.isoformat()), message_id=message_id)
        from cloudevents.http import CloudEvent

        event = CloudEvent(
            {
                "type": "google.cloud.pubsub.topic.v1.messagePublished",
                "source": "//pubsub.googleapis.com/projects/p/topics/t",
                "id": message_id,
            },
            body,
        )
        try:
            req = parse_run_request(decode_pubsub_event(event), rt.config, job="retrain")
            outcomes.append(retrain(req, rt))
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"race-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(o.version for o in outcomes) == [1, 2, 3]
    assert _versions(rt, SEG) == [1, 2, 3]
    champion = rt.registry().alias(SEG)
    assert champion is not None
    assert champion.version in {1, 2, 3}
    assert rt.registry().verify(SEG).ok
    history = rt.registry().history(SEG)
    assert [h.seq for h in history] == list(range(1, len(history) + 1))
    assert history[-1].version == champion.version


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"message": {"data": "%%%", "messageId": "1"}}, "not valid base64"),
        (envelope(b"{oops"), "not valid JSON"),
        (envelope({"model": "churn-model"}), "unknown model 'churn-model'"),
        (envelope({"reason": "manual"}), "no 'model'"),
        (envelope([1, 2, 3]), "must be a JSON object"),
        ({"subscription": "s"}, "no 'message' object"),
    ],
)
def test_malformed_events_are_acknowledged_logged_and_leave_nothing(
    rt, client, logs, body, problem: str
) -> None:
    headers = {
        "ce-id": "bad-1",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-specversion": "1.0",
        "ce-time": "2026-11-20T00:00:00Z",
        "Content-Type": "application/json",
    }
    resp = client.post("/", data=json.dumps(body), headers=headers)
    assert resp.status_code == 200  # acknowledged: Pub/Sub must not redeliver it
    records = [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]
    errors = [r for r in records if r["severity"] == "ERROR"]
    assert len(errors) == 1
    assert problem in errors[0]["message"]
    assert errors[0]["error_type"].endswith("Error")
    assert _all_objects(rt) == []  # not even a run marker


def test_missing_data_fails_permanently_without_a_version(rt, client, logs) -> None:
    resp = post(client, retrain_payload(SEG, as_of="2020-01-01"), message_id="old")
    assert resp.status_code == 200
    assert _versions(rt, SEG) == []
    error = next(json.loads(line) for line in logs.getvalue().splitlines() if '"ERROR"' in line)
    assert "no dt= partitions in the window" in error["message"]
    status = rt.ledger().status(SEG, "retrain")
    assert status["last_failure"]["outcome"] == "failed"
    # A redelivery of the same failed message is acknowledged without retrying the work.
    assert (
        post(client, retrain_payload(SEG, as_of="2020-01-01"), message_id="old").status_code == 200
    )
    assert _versions(rt, SEG) == []


def test_transient_failure_is_retried_then_succeeds(rt, client, storage_client) -> None:
    rt.registry().bucket_name  # noqa: B018 - touch: the bucket name is what we break below
    storage_client.bucket(rt.settings.registry_bucket).delete(force=True)
    payload = retrain_payload(RISK, as_of=AS_OF.isoformat())
    assert post(client, payload, message_id="m1").status_code == 500  # retry, not ack
    storage_client.create_bucket(rt.settings.registry_bucket)
    assert post(client, payload, message_id="m1").status_code == 200
    assert _versions(rt, RISK) == [1]


def _with_config(rt, mutate) -> None:
    raw = copy.deepcopy(RAW_CONFIG)
    mutate(raw)
    rt._config = parse_config(raw)


def test_worse_candidate_is_registered_not_promoted_with_reasons(rt, client) -> None:
    assert post(client, retrain_payload(SEG, as_of=AS_OF.isoformat())).status_code == 200
    # Someone changes the estimator to 9 clusters: a clearly lower silhouette on 4 segments.
    _with_config(
        rt, lambda r: r["models"][SEG]["estimator"]["steps"][1]["params"].update(n_clusters=9)
    )
    assert post(client, retrain_payload(SEG, as_of=AS_OF.isoformat())).status_code == 200
    assert _versions(rt, SEG) == [1, 2]
    assert rt.registry().resolve(SEG) == 1
    manifest = rt.registry().manifest(SEG, 2)
    assert manifest["gate"]["passed"] is False
    assert (
        manifest["metrics"]["champion"]["silhouette"]
        > manifest["metrics"]["candidate"]["silhouette"]
    )
    assert any("champion v1" in r and "rejected" in r for r in manifest["gate"]["reasons"])
    report = rt.registry().read_file(SEG, 2, "report.html", manifest).decode()
    assert "REJECTED" in report


def test_shifted_data_below_floor_is_rejected_then_rollback(rt, client, storage_client) -> None:
    post(client, retrain_payload(SEG, as_of=AS_OF.isoformat()))
    # A better-or-equal retrain on the same data is promoted (v2) ...
    post(client, retrain_payload(SEG, as_of=AS_OF.isoformat()))
    assert rt.registry().resolve(SEG) == 2
    # ... then the population shifts: the candidate falls below the absolute floor.
    write_partitions(
        storage_client,
        bucket=rt.settings.data_bucket,
        prefix="customers",
        frame=customer_frame(2400, seed=2, shift=1.0),
        fmt="parquet",
        end=date(2026, 12, 31),
        days=14,
    )
    post(client, retrain_payload(SEG, as_of="2026-12-31"))
    m3 = rt.registry().manifest(SEG, 3)
    assert not m3["gate"]["passed"]
    assert any("floor" in r and "0.25" in r for r in m3["gate"]["reasons"])
    assert rt.registry().resolve(SEG) == 2
    back = rt.registry().rollback(SEG, reason="v2 misbehaves", actor="oncall")
    assert back.version == 1
    assert [(h.action, h.version) for h in rt.registry().history(SEG)] == [
        ("promote", 1),
        ("promote", 2),
        ("rollback", 1),
    ]


def test_tampered_champion_is_reported_and_never_loaded(rt, client, logs) -> None:
    post(client, retrain_payload(RISK, as_of=AS_OF.isoformat()))
    blob = rt.registry().bucket.blob(f"{RISK}/versions/000001/{ARTIFACT}")
    blob.upload_from_string(b"not the artifact you registered")
    assert post(client, retrain_payload(RISK, as_of=AS_OF.isoformat())).status_code == 200
    manifest = rt.registry().manifest(RISK, 2)
    assert "does not match the manifest" in manifest["gate"]["champion_error"]
    assert any("sha256" in line and '"ERROR"' in line for line in logs.getvalue().splitlines())


CONFORMANCE = ROOT.parent / "shared" / "conformance"


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="conformance fixtures live outside the repo")
@pytest.mark.parametrize("name", ["pubsub_binary", "pubsub_text", "legacy_pubsub", "storage"])
@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_conformance_events_are_refused_cleanly(rt, client, logs, name: str, mode: str) -> None:
    raw = json.loads((CONFORMANCE / f"{name}-cloudevent-input.json").read_text())
    if mode == "binary":
        headers = {f"ce-{k}": v for k, v in raw.items() if k not in {"data", "datacontenttype"}}
        headers["Content-Type"] = raw.get("datacontenttype", "application/json")
        resp = client.post("/", data=json.dumps(raw["data"]), headers=headers)
    else:
        resp = client.post(
            "/", data=json.dumps(raw), headers={"Content-Type": "application/cloudevents+json"}
        )
    assert resp.status_code == 200  # acknowledged, not retried
    errors = [json.loads(x) for x in logs.getvalue().splitlines() if '"ERROR"' in x]
    assert len(errors) == 1
    assert "retrain request refused" in errors[0]["message"]
    assert _all_objects(rt) == []


# --------------------------------------------------------------------------- bounded inputs


def test_manifest_and_report_do_not_grow_with_the_number_of_files(make_runtime, storage_client):
    """The same 569 rows as 5 files and as 200: the manifest's data section and the version
    report stay the same size (a file list would add ~20 KB to each)."""
    from warden.jobs.messages import RunRequest
    from warden_local.examples import breast_cancer_frame

    raw = copy.deepcopy(RAW_CONFIG)
    models = {}
    for name, prefix in (("risk-few", "few"), ("risk-many", "many")):
        models[name] = copy.deepcopy(raw["models"][RISK])
        models[name]["data"]["prefix"] = prefix
    raw["models"] = models
    rt = make_runtime(install=False)
    rt._config = parse_config(raw)
    data = breast_cancer_frame()
    days = [date(2026, 11, 16 + i) for i in range(5)]
    bucket = storage_client.bucket(rt.settings.data_bucket)
    for prefix, per_day in (("few", 1), ("many", 40)):
        chunks = [data.iloc[i::5] for i in range(5)]
        for day, chunk in zip(days, chunks, strict=True):
            for j in range(per_day):
                part = chunk.iloc[j::per_day].to_csv(index=False)
                bucket.blob(f"{prefix}/dt={day}/part-{j:05d}.csv").upload_from_string(part)

    sizes = {}
    for name, files in (("risk-few", 5), ("risk-many", 200)):
        request = RunRequest(model=name, reason="manual", key=name, message_id=name, as_of=AS_OF)
        assert retrain(request, rt).status == "registered"
        manifest = rt.registry().manifest(name, 1)
        window = manifest["data"]
        assert window["file_count"] == files
        assert window["rows"] == 569
        assert (window["first_partition"], window["last_partition"]) == (
            f"dt={days[0]}",
            f"dt={days[-1]}",
        )
        assert "files" not in window
        assert "partitions" not in window
        report = rt.registry().read_file(name, 1, "report.html", manifest).decode()
        assert "part-00001.csv" not in report
        sizes[name] = (len(json.dumps(window, sort_keys=True)), len(report))
    (few_data, few_report), (many_data, many_report) = sizes["risk-few"], sizes["risk-many"]
    assert abs(many_data - few_data) <= 8  # digits of the counts and byte totals
    assert abs(many_report - few_report) <= 300  # and the model name, run id, timestamps


def test_an_over_wide_data_file_fails_with_a_bounded_error_everywhere(rt, client, logs) -> None:
    """A file of 200,000 columns without the configured ones: the refusal names the file and a
    few columns, and the text stays small in the log, the run marker, the status and the event
    (the whole column list once made a 2 MB log entry, above Cloud Logging's 256 KB limit)."""
    names = ",".join(f"column_with_a_rather_long_name_{i:06d}" for i in range(200_000))
    wide = names + "\n" + ",".join(["1"] * 200_000) + "\n"
    bucket = rt.clients.storage.bucket(rt.settings.data_bucket)
    bucket.blob(f"breast-cancer/dt={AS_OF}/wide.csv").upload_from_string(wide)

    resp = post(client, retrain_payload(RISK, as_of=AS_OF.isoformat()), message_id="wide")

    assert resp.status_code == 200  # a permanent error: acknowledged, not redelivered
    assert _versions(rt, RISK) == []
    lines = logs.getvalue().splitlines()
    assert max(len(line) for line in lines) < 8_000
    refused = [json.loads(line) for line in lines if '"refused"' in line]
    assert len(refused) == 1
    assert "wide.csv: 200,000 columns, more than the 10,000-column limit" in refused[0]["message"]
    assert "and 199,990 more" in refused[0]["message"]
    markers = list(rt.clients.storage.list_blobs(rt.settings.registry_bucket, prefix=f"{RISK}/"))
    assert markers
    for blob in markers:  # the run marker and the status file
        text = blob.download_as_bytes().decode()
        assert "wide.csv: 200,000 columns" in text
        assert len(text) < 4_000, blob.name
