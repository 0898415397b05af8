"""The alert router's state lives in its own bucket (WARDEN_ALERT_BUCKET), apart from the model
registry: the settings, the CLI's silences, the router and housekeeping all use that bucket, and
outside the storage emulator nothing falls back to the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from test_terraform import _root
from warden import runtime
from warden.cli.main import main
from warden.errors import ConfigError
from warden.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_settings_read_the_alert_bucket() -> None:
    env = {"WARDEN_REGISTRY_BUCKET": "p-registry", "WARDEN_ALERT_BUCKET": "p-alerts"}
    settings = Settings.from_env(env)
    assert settings.alert_state_bucket == "p-alerts"
    assert settings.registry_bucket == "p-registry"


def test_only_the_emulator_falls_back_to_the_registry_bucket() -> None:
    local = Settings.from_env({"WARDEN_REGISTRY_BUCKET": "r", "STORAGE_EMULATOR_HOST": "h:1"})
    assert local.alert_state_bucket == "r"
    assert Settings(registry_bucket="r").alert_state_bucket == "r"  # built in code (tests)

    cloud = Settings.from_env({"WARDEN_REGISTRY_BUCKET": "p-registry"})
    with pytest.raises(ConfigError, match="WARDEN_ALERT_BUCKET is not set"):
        _ = cloud.alert_state_bucket
    rt = runtime.build(cloud, storage=object(), publisher=None)
    with pytest.raises(ConfigError, match="WARDEN_ALERT_BUCKET"):
        rt.alert_state()
    assert rt.registry().bucket_name == "p-registry"  # everything else still works


def test_the_router_state_of_a_runtime_is_in_the_alert_bucket(make_runtime, bucket_names) -> None:
    rt = make_runtime(install=False)
    assert rt.alert_state().bucket_name == bucket_names["alerts"]
    assert rt.registry().bucket_name == bucket_names["registry"]


def test_cli_silences_go_to_the_alert_bucket(
    make_runtime, bucket_names, storage_client, monkeypatch
) -> None:
    monkeypatch.setenv("WARDEN_REGISTRY_BUCKET", bucket_names["registry"])
    monkeypatch.setenv("WARDEN_ALERT_BUCKET", bucket_names["alerts"])
    monkeypatch.setenv("WARDEN_CONFIG", str(ROOT / "warden.yaml"))
    runner = CliRunner()
    out = runner.invoke(main, ["--json", "silence", "add", 'model="x"', "--duration", "1h"])
    assert out.exit_code == 0, out.output
    created = json.loads(out.output)
    alerts = [b.name for b in storage_client.list_blobs(bucket_names["alerts"])]
    assert alerts == ["_alerting/mutes.json"]
    assert list(storage_client.list_blobs(bucket_names["registry"])) == []
    # The router (a runtime on the same buckets) sees the operator's silence.
    rt = make_runtime(install=False)
    assert [s.id for s in rt.alert_state().list_silences()] == [created["id"]]


def test_terraform_gives_functions_and_the_cli_the_alert_bucket() -> None:
    root = _root()
    assert "alerts" in root["locals"]["buckets"]
    expected = '${google_storage_bucket.bucket["alerts"].name}'
    assert root["locals"]["environment"]["WARDEN_ALERT_BUCKET"] == expected
    cli_env = root["output"]["cli_env"]["value"]
    assert 'WARDEN_ALERT_BUCKET = google_storage_bucket.bucket["alerts"].name' in cli_env


def test_the_local_stack_keeps_router_state_apart_too(tmp_path) -> None:
    from warden_local.stack import LocalStack

    stack = LocalStack(run_dir=tmp_path)
    stack.endpoints.update(storage="h:1", pubsub="h:2", monitoring="h:3", scheduler="http://h:4")
    env = stack.client_env()
    assert env["WARDEN_ALERT_BUCKET"] == stack.alert_bucket
    assert env["WARDEN_ALERT_BUCKET"] != env["WARDEN_REGISTRY_BUCKET"]
    assert Settings.from_env(env).alert_state_bucket == stack.alert_bucket
