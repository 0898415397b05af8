"""Receivers not exercised elsewhere: Slack's body shape, the log receiver, Pub/Sub forward."""

from __future__ import annotations

import json
import logging

from warden.alerts.receivers import deliver
from warden.config.alerting import Receiver

MESSAGE = {
    "title": "[FIRING:2] model-drift (model=m)",
    "text": "two alerts\n- a\n- b",
    "status": "firing",
    "alerts": [],
    "group_labels": {"model": "m"},
}


class _Resp:
    def __init__(self, status: int) -> None:
        self.status_code = status


def test_slack_posts_text_and_blocks_to_the_secret_url() -> None:
    calls = []

    def post(url, data, headers, timeout):
        calls.append((url, json.loads(data), headers))
        return _Resp(200)

    receiver = Receiver.model_validate(
        {"name": "s", "slack": {"url_env": "SLACK_URL", "channel": "#ml"}}
    )
    result = deliver(
        receiver, MESSAGE, secrets={"SLACK_URL": "http://hooks.local/x"}.get, http_post=post
    )
    assert result.ok
    assert result.attempts == 1
    url, body, _ = calls[0]
    assert url == "http://hooks.local/x"
    assert body["text"] == MESSAGE["title"]
    assert body["channel"] == "#ml"
    assert body["blocks"][0]["type"] == "header"
    missing = deliver(receiver, MESSAGE, secrets=lambda name: None, http_post=post)
    assert not missing.ok
    assert "not set" in missing.error
    assert len(calls) == 1  # nothing sent without a URL


def test_log_receiver_writes_one_structured_line(caplog) -> None:
    receiver = Receiver.model_validate({"name": "l", "log": {}})
    with caplog.at_level(logging.WARNING, logger="warden.alerts.receivers"):
        result = deliver(receiver, MESSAGE, secrets=lambda name: None)
    assert result.ok
    [record] = [r for r in caplog.records if r.name == "warden.alerts.receivers"]
    assert record.json_fields["notification"]["title"] == MESSAGE["title"]


def test_pubsub_forward_publishes_the_message(topic_sink) -> None:
    topic_id, publisher, pull = topic_sink("forward")
    receiver = Receiver.model_validate(
        {"name": "f", "pubsub": {"topic": topic_id, "action": "forward"}}
    )
    result = deliver(
        receiver,
        MESSAGE,
        secrets=lambda name: None,
        publisher_factory=lambda: publisher,
        project="warden-test",
    )
    assert result.ok
    [(_attributes, payload)] = pull(1)
    assert payload["title"] == MESSAGE["title"]


HOSTILE = {
    "title": "[FIRING:1] <!channel> & <https://evil|console.cloud.google.com>",
    "text": "- [firing] <!here> &lt;already&gt; (model=<@U123>)",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"model": "<!channel>"},
            "annotations": {"summary": "<!here>"},
        }
    ],
}


def test_pubsub_and_log_receivers_carry_alert_data_raw(topic_sink, caplog) -> None:
    """Slack escaping is for markup; data receivers must not alter what they forward."""
    topic_id, publisher, pull = topic_sink("raw")
    receiver = Receiver.model_validate(
        {"name": "f", "pubsub": {"topic": topic_id, "action": "forward"}}
    )
    result = deliver(
        receiver,
        HOSTILE,
        secrets=lambda name: None,
        publisher_factory=lambda: publisher,
        project="warden-test",
    )
    assert result.ok
    [(_attributes, payload)] = pull(1)
    assert payload == HOSTILE
    log_receiver = Receiver.model_validate({"name": "l", "log": {}})
    with caplog.at_level(logging.WARNING, logger="warden.alerts.receivers"):
        assert deliver(log_receiver, HOSTILE, secrets=lambda name: None).ok
    [record] = [r for r in caplog.records if r.name == "warden.alerts.receivers"]
    assert record.json_fields["notification"] == HOSTILE
