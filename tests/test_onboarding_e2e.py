"""A new model onboarded on the local stack through the `warden` CLI alone (issue 15).

docs/onboarding.md, step by step: a model of our own in warden.yaml (scikit-learn's
breast-cancer data as dated CSV exports), `warden config validate`, `warden local upload`,
`warden retrain --wait` (a version), a retrain that fails and its reason in `warden runs`, a
forced promote and a rollback whose events arrive on `model-events`, the failure's alert in
`warden alerts`, silenced with `warden silence add`. The stack runs only the functions this
needs; every step goes through a `warden` subprocess, Pub/Sub and Cloud Storage from outside.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from stack_process import RunningStack, local_stack, wait_for

ROOT = Path(__file__).resolve().parents[1]
MODEL = "churn-risk"
FEATURES = ["mean_radius", "mean_texture", "mean_smoothness", "worst_area", "worst_concavity"]
DAYS = 8


def _config(tmp: Path) -> Path:
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    raw["models"] = {
        MODEL: {
            "task": "classification",
            "description": "onboarded in the e2e test",
            "estimator": {
                "steps": [
                    {"class": "StandardScaler"},
                    {"class": "LogisticRegression", "params": {"max_iter": 1000}},
                ]
            },
            "data": {"prefix": "churn", "format": "csv", "window_days": 30},
            "features": FEATURES,
            "target": "churned",
            "positive_label": 1,
            "gate": {"metric": "roc_auc", "min": 0.8, "max_relative_drop": 0.05},
        }
    }
    # Every alert to the log receiver: no webhook secrets needed.
    raw["alerting"]["route"] = {**raw["alerting"]["route"], "receiver": "log", "routes": []}
    raw["alerting"]["route"]["group_wait"] = "0s"
    path = tmp / "warden.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _exports(folder: Path, today: datetime) -> list[str]:
    """The breast-cancer rows as one CSV export per day, named by their day."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["churned"] = 1 - frame.pop("target")
    folder.mkdir()
    days = []
    for i in range(DAYS):
        day = (today - timedelta(days=DAYS - i)).date().isoformat()
        frame.iloc[i::DAYS][[*FEATURES, "churned"]].to_csv(folder / f"churn-{day}.csv", index=False)
        days.append(day)
    return days


def _subscribe(stack: RunningStack) -> Any:
    """A pull subscription on model-events, made before anything publishes."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    project = stack.state["project"]
    sub = subscriber.subscription_path(project, "e2e-model-events")
    subscriber.create_subscription(name=sub, topic=f"projects/{project}/topics/model-events")
    return subscriber, sub


def _events(subscriber: Any, sub: str, seen: list[dict]) -> list[dict]:
    resp = subscriber.pull(subscription=sub, max_messages=50, timeout=5)
    for m in resp.received_messages:
        seen.append(json.loads(m.message.data))
    if resp.received_messages:
        subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in resp.received_messages])
    return seen


def test_a_new_model_from_csv_to_champion_with_the_cli_alone(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path)
    today = datetime.now(UTC)
    days = _exports(tmp_path / "exports", today)
    with local_stack(tmp_path, config, speed=1, only="retrain_model,route_alert_events") as stack:
        for key in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
            monkeypatch.setenv(key, stack.env[key])
        warden = stack.warden
        env_config = ("--config", str(config))

        checked = json.loads(warden(*env_config, "config", "validate").stdout)
        assert (checked["ok"], checked["models"], checked["errors"]) == (True, 1, [])
        uploaded = warden(*env_config, "local", "upload", MODEL, str(tmp_path / "exports"))
        assert all(day in uploaded.stdout for day in days), uploaded.stdout
        subscriber, sub = _subscribe(stack)

        first = json.loads(warden(*env_config, "retrain", MODEL, "--wait").stdout)
        assert first["run"]["status"] == "done"
        assert (first["run"]["version"], first["run"]["promoted"]) == (1, True)

        # A retrain whose window holds no data fails; --wait says why and exits 7.
        failed = warden(
            *env_config, "retrain", MODEL, "--as-of", "2020-01-31", "--wait", check=False
        )
        assert failed.returncode == 7, failed.stdout + failed.stderr
        reason = json.loads(failed.stdout)["run"]["error"]
        assert reason
        assert reason in failed.stderr
        runs = json.loads(warden(*env_config, "runs", MODEL).stdout)
        assert [(r["status"], r["error"]) for r in runs if r["status"] == "failed"] == [
            ("failed", reason)
        ]

        second = json.loads(
            warden(*env_config, "retrain", MODEL, "--as-of", days[-2], "--wait").stdout
        )
        assert second["run"]["version"] == 2
        if not second["run"]["promoted"]:  # rejected by its gate: an operator may overrule
            warden(*env_config, "promote", MODEL, "2", "--force", "--reason", "e2e: overrule")
        rolled = json.loads(warden(*env_config, "rollback", MODEL).stdout)
        assert rolled["version"] == 1

        seen: list[dict] = []
        wait_for(
            lambda: (
                {"promoted", "rolled_back", "failed"}
                <= {e.get("kind") for e in _events(subscriber, sub, seen)}
            ),
            60,
            "promoted, rolled_back and failed on model-events",
        )
        back = [e for e in seen if e.get("kind") == "rolled_back"]
        assert back[-1]["version"] == 1
        assert back[-1]["previous_version"] == 2

        # The failure reached the router (route_alert_events): an active alert with its error.
        def failure_alert() -> dict | None:
            groups = json.loads(warden(*env_config, "alerts").stdout)
            for group in groups:
                for alert in group["alerts"]:
                    if alert["labels"].get("alertname") == "ModelFailed":
                        return alert
            return None

        alert = wait_for(failure_alert, 60, "the ModelFailed alert in warden alerts")
        assert alert["state"] == "active"
        warden(
            *env_config,
            "silence",
            "add",
            "alertname=ModelFailed",
            f"model={MODEL}",
            "--duration",
            "1h",
            "--comment",
            "e2e: known bad as-of",
        )
        silenced = wait_for(
            lambda: (a := failure_alert()) is not None and a["state"] == "silenced" and a,
            30,
            "the alert shown silenced",
        )
        assert silenced["silenced_by"]
        subscriber.delete_subscription(subscription=sub)
        subscriber.close()


pytestmark = pytest.mark.emulator
