"""The operator CLI against the storage emulator."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from warden.cli.main import EXIT_INTEGRITY, EXIT_NOT_FOUND, main
from warden.jobs.messages import RunRequest
from warden.jobs.retrain import retrain
from warden.store.registry import ARTIFACT

ROOT = Path(__file__).resolve().parents[1]
MODEL = "breast-cancer-risk"


@pytest.fixture
def cli_env(seed, make_runtime, bucket_names, monkeypatch):
    seed(days=5, models=(MODEL,))
    rt = make_runtime(install=False)
    for key in ("a", "b"):
        retrain(
            RunRequest(
                model=MODEL, reason="manual", key=key, message_id=key, as_of=date(2026, 11, 20)
            ),
            rt,
        )
    monkeypatch.setenv("WARDEN_REGISTRY_BUCKET", bucket_names["registry"])
    monkeypatch.setenv("WARDEN_CONFIG", str(ROOT / "warden.yaml"))
    return rt


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_versions_show_history_promote_rollback(cli_env) -> None:
    out = invoke("--json", "versions", MODEL)
    assert out.exit_code == 0
    rows = json.loads(out.output)
    assert [r["version"] for r in rows] == [1, 2]
    assert [r["champion"] for r in rows] == [False, True]
    shown = json.loads(invoke("--json", "show", f"{MODEL}@1").output)
    assert shown["version"] == 1
    assert shown["files"][ARTIFACT]["sha256"]
    out = invoke("rollback", MODEL, "--reason", "bad week")
    assert out.exit_code == 0
    assert "rolled back to v1" in out.output
    out = invoke("promote", MODEL, "2")
    assert out.exit_code == 0
    assert "champion is now v2" in out.output
    history = json.loads(invoke("--json", "history", MODEL).output)
    assert [(h["action"], h["version"]) for h in history] == [
        ("promote", 1),
        ("promote", 2),
        ("rollback", 1),
        ("promote", 2),
    ]
    models = json.loads(invoke("--json", "models").output)
    assert {"model": MODEL, "task": "classification", "champion": 2} in models


def test_cli_exit_codes(cli_env) -> None:
    out = CliRunner().invoke(main, ["show", f"{MODEL}@9"])
    assert out.exit_code == EXIT_NOT_FOUND
    assert "version 9 does not exist" in out.output
    cli_env.registry().bucket.blob(f"{MODEL}/versions/000001/{ARTIFACT}").upload_from_string(b"x")
    out = CliRunner().invoke(main, ["promote", MODEL, "1"])
    assert out.exit_code == EXIT_INTEGRITY
    assert "does not match" in out.output
    assert CliRunner().invoke(main, ["versions"]).exit_code == 2  # usage
    out = CliRunner().invoke(main, ["versions", "nope"])
    assert out.exit_code == EXIT_NOT_FOUND
    assert "unknown model 'nope'" in out.output


def test_report_downloads_the_version_report(cli_env, tmp_path) -> None:
    out = invoke("--json", "report", f"{MODEL}@1", "--out", str(tmp_path))
    assert out.exit_code == 0
    path = Path(json.loads(out.output)["path"])
    assert path.name == f"{MODEL}-v1.html"
    html = path.read_text()
    assert 'id="gate"' in html
    assert "PASSED" in html
    missing = CliRunner().invoke(main, ["report", MODEL, "--monitor", "--out", str(tmp_path)])
    assert missing.exit_code == EXIT_NOT_FOUND
    assert "no monitoring runs yet" in missing.output


def test_silences_add_list_expire(make_runtime, monkeypatch) -> None:
    rt = make_runtime(install=False)
    monkeypatch.setenv("WARDEN_REGISTRY_BUCKET", rt.settings.registry_bucket)
    monkeypatch.setenv("WARDEN_CONFIG", str(ROOT / "warden.yaml"))
    out = invoke(
        "--json",
        "silence",
        "add",
        'model="customer-segments"',
        'severity=~"warning|info"',
        "--duration",
        "1d",
        "--comment",
        "migration",
        "--author",
        "ops",
    )
    assert out.exit_code == 0
    created = json.loads(out.output)
    assert created["ends_at"] - created["starts_at"] == 86400
    listed = json.loads(invoke("--json", "silence", "list").output)
    assert [s["id"] for s in listed] == [created["id"]]
    assert listed[0]["matchers"] == ['model="customer-segments"', 'severity=~"warning|info"']
    assert invoke("silence", "expire", created["id"]).exit_code == 0
    assert json.loads(invoke("--json", "silence", "list").output) == []
    again = CliRunner().invoke(main, ["silence", "expire", created["id"]])
    assert again.exit_code == EXIT_NOT_FOUND
    bad = CliRunner().invoke(main, ["silence", "add", "model~~nope"])
    assert bad.exit_code != 0
    assert "matcher" in bad.output.lower()


def test_backup_wipe_restore_from_the_cli(cli_env, bucket_names, storage_client, monkeypatch):
    monkeypatch.setenv("WARDEN_BACKUP_BUCKET", bucket_names["backup"])
    registry = cli_env.registry()
    manifests = {v["version"]: v for v in registry.versions(MODEL)}
    champion = registry.alias(MODEL).version

    out = invoke("--json", "backup", "--model", MODEL, "--id", "cli-1")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["versions"] == {MODEL: [1, 2]}
    assert "cli-1" in invoke("snapshots").output
    assert invoke("backup", "--model", "nope").exit_code == EXIT_NOT_FOUND  # unknown, named

    for blob in storage_client.list_blobs(bucket_names["registry"]):
        blob.delete()
    assert registry.versions(MODEL) == []
    dry = invoke("restore", "cli-1", "--dry-run")
    assert dry.exit_code == 0
    assert "would_restore" in dry.output
    assert registry.versions(MODEL) == []

    out = invoke("--json", "restore", "cli-1")
    assert out.exit_code == 0, out.output
    assert {v["version"]: v for v in registry.versions(MODEL)} == manifests
    assert registry.alias(MODEL).version == champion
    registry.load(MODEL)
    assert invoke("restore", "no-such-snapshot").exit_code != 0


def test_housekeeping_dry_run_then_real_from_the_cli(cli_env, bucket_names, monkeypatch):
    monkeypatch.setenv("WARDEN_BACKUP_BUCKET", bucket_names["backup"])
    monkeypatch.setenv("WARDEN_METRICS", "off")
    dry = invoke("housekeeping", MODEL, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete versions: []" in dry.output  # two versions, keep_last is 10
    out = invoke("--json", "housekeeping", MODEL)
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["status"] == "completed"
    assert data["integrity"] == {"checked": [1, 2], "failures": []}
    assert invoke("--json", "snapshots").output.count(f"-{MODEL}") >= 1
    assert invoke("housekeeping", "nope").exit_code == EXIT_NOT_FOUND


class StorageTripwire:
    """Stands where Cloud Storage would be (STORAGE_EMULATOR_HOST): records every request and
    answers 404, so a command that touches storage is seen doing so."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        tripwire = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                tripwire.requests.append(f"{self.command} {self.path}")
                body = b'{"error": {"code": 404, "message": "tripwire"}}'
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _record

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def tripwire(monkeypatch) -> Iterator[Callable[[], StorageTripwire]]:
    """``tripwire()`` starts a fresh one and points the CLI's storage client at it. A fresh one
    per phase: the storage client may abandon a connection whose request the server only
    records later, and that must not be counted against the next command."""
    wires: list[StorageTripwire] = []
    monkeypatch.setenv("WARDEN_REGISTRY_BUCKET", "tripwire-registry")
    monkeypatch.setenv("WARDEN_CONFIG", str(ROOT / "warden.yaml"))

    def start() -> StorageTripwire:
        wires.append(StorageTripwire())
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", wires[-1].host)
        return wires[-1]

    yield start
    for wire in wires:
        wire.server.shutdown()
        wire.server.server_close()


@pytest.mark.parametrize(
    "args",
    [
        ["show", "ghost"],
        ["show", "ghost@1"],
        ["history", "ghost"],
        ["promote", "ghost", "1"],
        ["rollback", "ghost"],
        ["rollback", "ghost", "--to", "1"],
        ["--json", "versions", "ghost"],
    ],
)
def test_unconfigured_models_are_refused_before_storage_is_touched(tripwire, args) -> None:
    # The tripwire works: the same command for a configured model reaches it.
    control = tripwire()
    out = CliRunner().invoke(main, [a.replace("ghost", MODEL) for a in args])
    assert out.exit_code != 0  # the tripwire answers 404 to everything
    assert control.requests, "the control command should have reached storage"

    wire = tripwire()
    out = CliRunner().invoke(main, args)
    assert out.exit_code == EXIT_NOT_FOUND, out.output
    assert "unknown model 'ghost'" in out.output
    assert "warden.yaml declares: breast-cancer-risk, customer-segments" in out.output
    assert wire.requests == []


def test_a_registry_model_missing_from_the_config_cannot_be_changed(cli_env) -> None:
    """Objects of a model warden.yaml does not declare (left over, or written by someone else)
    are neither shown nor promoted: the config is the list of what the CLI acts on."""
    registry = cli_env.registry()
    bucket = registry.bucket
    for blob in list(bucket.list_blobs(prefix=f"{MODEL}/")):
        bucket.copy_blob(blob, bucket, "ghost/" + blob.name.removeprefix(f"{MODEL}/"))
    before = sorted(b.name for b in bucket.list_blobs(prefix="ghost/"))
    assert before
    for args in (["show", "ghost@1"], ["history", "ghost"], ["rollback", "ghost"]):
        out = CliRunner().invoke(main, args)
        assert out.exit_code == EXIT_NOT_FOUND, (args, out.output)
        assert "unknown model 'ghost'" in out.output
    out = CliRunner().invoke(main, ["promote", "ghost", "1"])
    assert out.exit_code == EXIT_NOT_FOUND
    assert sorted(b.name for b in bucket.list_blobs(prefix="ghost/")) == before


# -- operator actions are events too (issue 15, item 3) -------------------------------------------


@pytest.fixture
def events_env(cli_env, topic_sink, monkeypatch):
    """The CLI publishes model-events on a fresh topic; the operator is alice."""
    topic_id, _, pull = topic_sink("model-events")
    monkeypatch.setenv("WARDEN_PROJECT", "warden-test")
    monkeypatch.setenv("WARDEN_EVENTS_TOPIC", topic_id)
    monkeypatch.setenv("CLOUDSDK_CORE_ACCOUNT", "alice@example.com")
    return pull


def test_promote_and_rollback_publish_events_and_record_the_operator(cli_env, events_env):
    pull = events_env
    registry = cli_env.registry()
    moves = len(registry.history(MODEL))
    same = invoke("promote", MODEL, "2")  # v2 is the champion already
    assert same.exit_code == 0
    assert same.output.strip() == f"{MODEL}: v2 is already champion"
    assert invoke("rollback", MODEL, "--to", "2").output.strip().endswith("already champion")
    assert len(registry.history(MODEL)) == moves  # neither no-op moved anything

    assert invoke("rollback", MODEL, "--reason", "bad week").exit_code == 0
    assert invoke("promote", MODEL, "2", "--reason", "fixed upstream").exit_code == 0
    got = sorted(
        (a["kind"], p["version"], p["previous_version"], p["actor"], p["reason"])
        for a, p in pull(want=2)
    )
    assert got == [
        ("promoted", 2, 1, "alice@example.com", "fixed upstream"),
        ("rolled_back", 1, 2, "alice@example.com", "bad week"),
    ]  # and nothing from the no-ops, published before these
    history = registry.history(MODEL)
    assert [(h.action, h.version, h.actor) for h in history[moves:]] == [
        ("rollback", 1, "alice@example.com"),
        ("promote", 2, "alice@example.com"),
    ]


def test_promoting_a_version_that_failed_its_gate_needs_force_and_a_reason(
    cli_env, events_env, seed
):
    pull = events_env
    seed(days=5, models=(MODEL,), label_noise=0.45)  # labels mostly noise: AUC far below 0.90
    retrain(
        RunRequest(model=MODEL, reason="manual", key="c", message_id="c", as_of=date(2026, 11, 20)),
        cli_env,
    )
    registry = cli_env.registry()
    assert registry.manifest(MODEL, 3)["gate"]["passed"] is False
    assert registry.alias(MODEL).version == 2

    refused = CliRunner().invoke(main, ["promote", MODEL, "3"])
    assert refused.exit_code == 2, refused.output
    assert "v3 failed its gate" in refused.output
    assert "--force --reason" in refused.output
    unexplained = CliRunner().invoke(main, ["promote", MODEL, "3", "--force"])
    assert unexplained.exit_code == 2
    assert registry.alias(MODEL).version == 2

    out = invoke("--json", "promote", MODEL, "3", "--force", "--reason", "INC-7: eval ok offline")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["forced"] is True
    why = "forced past a failed gate: INC-7: eval ok offline"
    last = registry.history(MODEL)[-1]
    assert (last.version, last.reason, last.actor) == (3, why, "alice@example.com")
    [(attributes, event)] = pull(want=1)
    assert (attributes["kind"], event["version"], event["forced"], event["reason"]) == (
        "promoted",
        3,
        True,
        why,
    )
