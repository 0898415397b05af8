"""Alert data reaches Slack as text, never as markup: hostile incidents through the real router
state (fake-gcs-server) to a local capture HTTP server, checking the bytes actually POSTed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from capture import Capture, running
from warden.alerts import alert_from_incident
from warden.alerts.receivers import SLACK_HEADER_LIMIT, SLACK_TEXT_LIMIT, deliver, slack_escape
from warden.alerts.state import AlertState
from warden.config.alerting import Receiver, parse_alerting

T = 1_700_000_000.0
SECRET = "hmac-key"

#: What an attacker who can shape an incident (or a model event) would put in it.
HOSTILE = {
    "mass mention": "<!channel> please look",
    "here": "ping <!here>",
    "user mention": "ask <@U123>",
    "disguised link": "see <https://evil.example/x|console.cloud.google.com>",
    "already escaped": "a &lt;b&gt; &amp; c",
    "newlines": "line one\n<!everyone>\n- [resolved] all fine",
}
BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")


@pytest.fixture
def capture() -> Iterator[Capture]:
    with running(SECRET) as cap:
        yield cap


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _slack_fields(body: dict[str, Any]) -> list[str]:
    """Every string Slack renders as text or markup: the fallback ``text`` and each block's
    ``text.text`` (plain_text and mrkdwn alike)."""
    fields = [body["text"]]
    for block in body["blocks"]:
        text = block.get("text")
        if isinstance(text, dict):
            fields.append(text["text"])
        for field in block.get("fields", []):
            fields.append(field["text"])
    return fields


def _assert_inert(field: str) -> None:
    assert "<" not in field, field  # Warden builds no <link|text> today: no "<" at all
    assert ">" not in field, field
    assert not BARE_AMPERSAND.search(field), field  # every "&" starts one of the 3 entities


def _incident(n: int, summary: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "version": "1.2",
        "incident": {
            "incident_id": f"0.inc{n}",
            "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/0.inc{n}",
            "started_at": int(T) - 60,
            "ended_at": None,
            "state": "open",
            "summary": summary,
            "resource": {"type": "global", "labels": {"project_id": "p"}},
            "metric": {"type": "custom.googleapis.com/warden/drift", "labels": labels},
            "policy_name": "Drift <!channel> & co",
            "policy_user_labels": {},
            "condition_name": "drift high",
            "severity": "Warning",
        },
    }


def test_hostile_incidents_reach_slack_escaped_and_the_webhook_raw(
    capture: Capture, storage_client, bucket_names
) -> None:
    config = parse_alerting(
        {
            "receivers": [
                {"name": "slack", "slack": {"url_env": "SLACK_URL", "channel": "#ml"}},
                {"name": "hook", "webhook": {"url_env": "HOOK_URL", "secret_env": "HOOK_KEY"}},
            ],
            "route": {
                "receiver": "slack",
                "group_by": ["alertname", "model"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
                "routes": [{"receiver": "slack", "continue": True}, {"receiver": "hook"}],
            },
        },
        "test",
    )
    secrets = {
        "SLACK_URL": capture.url + "/slack",
        "HOOK_URL": capture.url + "/hook",
        "HOOK_KEY": SECRET,
    }
    state = AlertState(storage_client, bucket_names["registry"], lease=60)
    incidents = [
        alert_from_incident(
            _incident(
                i,
                summary,
                {
                    "model": "<!channel>",  # a group label: it reaches the title and the header
                    "owner": f"<@U{i}> & <https://evil.example|console.cloud.google.com>",
                    "note": summary,
                },
            ),
            received_at=T,
        )
        for i, summary in enumerate(HOSTILE.values())
    ]
    state.ingest(incidents, config=config, now=T, instance="a")
    for now in (T + 31, T + 40):
        state.flush_due(
            config=config,
            now=now,
            instance="a",
            send=lambda r, m: deliver(r, m, secrets=secrets.get, sleep=lambda s: None),
        )

    (slack,) = capture.bodies("/slack")
    fields = _slack_fields(slack)
    assert len(fields) == 3  # fallback text, header, section: all of them checked
    for field in fields:
        _assert_inert(field)
    fallback, header, section = fields
    assert "model=&lt;!channel&gt;" in fallback
    assert header.startswith("[FIRING:6] Drift &lt;!channel&gt; &amp; co")  # plain_text too
    shown = _unescape(section)
    for summary in HOSTILE.values():  # every summary is shown, as typed (newlines and all)
        assert summary in shown
    assert "<@U3> & <https://evil.example|console.cloud.google.com>" in shown
    assert "&amp;lt;b&amp;gt; &amp;amp; c" in section  # already-escaped text stays literal
    assert "&lt;https://evil.example|console.cloud.google.com&gt;" in section
    assert slack["channel"] == "#ml"

    # The JSON webhook carries data, not markup: the same alerts, byte for byte raw.
    (hook,) = capture.bodies("/hook")
    summaries = {a["annotations"]["summary"] for a in hook["alerts"]}
    assert summaries == set(HOSTILE.values())
    assert {a["labels"]["model"] for a in hook["alerts"]} == {"<!channel>"}
    assert "<!channel>" in hook["title"]


def test_escaping_rules_and_long_hostile_text_is_clipped_on_entity_boundaries(
    capture: Capture,
) -> None:
    assert slack_escape("<!here> & <@U1>") == "&lt;!here&gt; &amp; &lt;@U1&gt;"
    assert slack_escape("&lt;") == "&amp;lt;"
    receiver = Receiver.model_validate({"name": "s", "slack": {"url_env": "SLACK_URL"}})
    secrets = {"SLACK_URL": capture.url + "/slack"}.get
    # Every clip position falls inside an entity for some offset: try them all.
    for offset in range(5):
        message = {
            "title": "x" * offset + "&<>" * 200,
            "text": "y" * offset + "<!channel>&" * 1000,
            "status": "firing",
            "alerts": [],
        }
        assert deliver(receiver, message, secrets=secrets).ok
    bodies = capture.bodies("/slack")
    assert len(bodies) == 5
    for body in bodies:
        fields = _slack_fields(body)
        for field in fields:
            _assert_inert(field)
        assert len(fields[1]) <= SLACK_HEADER_LIMIT
        assert len(fields[2]) <= SLACK_TEXT_LIMIT
        assert fields[1].endswith("…")
        assert fields[2].endswith("…")
