"""Receivers not exercised elsewhere: Slack's body shape, the log receiver, Pub/Sub forward,
and the webhook signature (timestamp + body, replays refused) with the verifier documented in
docs/alerting.md."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from capture import running
from warden.alerts.receivers import deliver
from warden.alerts.signing import sign, verify
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


# --- signed webhooks ------------------------------------------------------------------------

ALERTING_DOC = Path(__file__).resolve().parents[1] / "docs/alerting.md"
KEY = "receiver-hmac-key"
T0 = 1_767_225_600  # a fixed instant: every check below passes `now`, none reads the clock
BODY = json.dumps(MESSAGE, sort_keys=True).encode()
HOOK = Receiver.model_validate(
    {"name": "hook", "webhook": {"url_env": "HOOK_URL", "secret_env": "HOOK_SECRET"}}
)


def _v1(header: str) -> str:
    return dict(f.split("=", 1) for f in header.split(","))["v1"]


def test_a_signed_body_verifies_within_the_window_and_only_with_its_key() -> None:
    header = sign(KEY, BODY, T0)
    mac = hmac.new(KEY.encode(), f"{T0}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T0},v1={mac}"  # the timestamp is inside the HMAC, not beside it
    assert verify(KEY, BODY, header, now=T0)
    assert verify(KEY, BODY, header, now=T0 + 300)  # the window's edges, both sides
    assert verify(KEY, BODY, header, now=T0 - 300)
    assert not verify("another-key", BODY, header, now=T0)


def test_a_tampered_body_fails() -> None:
    header = sign(KEY, BODY, T0)
    flipped = BODY.replace(b'"firing"', b'"resolved"')
    assert flipped != BODY
    assert verify(KEY, BODY, header, now=T0)
    assert not verify(KEY, flipped, header, now=T0)
    assert not verify(KEY, BODY + b" ", header, now=T0)


def test_a_tampered_timestamp_fails() -> None:
    """Moving ``t`` forward (to dodge the window) breaks the signature, even when the new
    ``t`` is perfectly fresh."""
    header = sign(KEY, BODY, T0)
    moved = header.replace(f"t={T0}", f"t={T0 + 3600}")
    assert moved != header
    assert verify(KEY, BODY, header, now=T0)
    assert not verify(KEY, BODY, moved, now=T0 + 3600)


def test_a_replay_after_the_window_fails() -> None:
    header = sign(KEY, BODY, T0)  # captured off the wire, otherwise perfectly valid
    assert verify(KEY, BODY, header, now=T0 + 300)
    assert not verify(KEY, BODY, header, now=T0 + 301)
    assert not verify(KEY, BODY, header, now=T0 + 86_400)
    assert verify(KEY, BODY, header, now=T0 + 301, tolerance=600)  # the window decides


def test_a_timestamp_too_far_in_the_future_fails() -> None:
    header = sign(KEY, BODY, T0)
    assert verify(KEY, BODY, header, now=T0 - 300)
    assert not verify(KEY, BODY, header, now=T0 - 301)
    assert not verify(KEY, BODY, header, now=T0 - 86_400)


def test_the_header_is_parsed_leniently_and_any_v1_may_match() -> None:
    """Fields in any order, spaces, unknown fields, upper-case hex, and two ``v1`` (an old key's
    and the current one's, as during a key rotation): one valid ``v1`` suffices."""
    good = _v1(sign(KEY, BODY, T0))
    old = _v1(sign("the-old-key", BODY, T0))
    header = f" v1={old} , scheme=x,v0=legacy, t={T0} ,v1={good.upper()},flag"
    assert verify(KEY, BODY, header, now=T0)
    assert verify("the-old-key", BODY, header, now=T0)
    assert not verify(KEY, BODY, header.replace(good.upper(), "0" * 64), now=T0)


MALFORMED = [
    "",
    "garbage",
    ",,,===",
    "sha256=" + hmac.new(KEY.encode(), BODY, hashlib.sha256).hexdigest(),  # the old, body-only
    "v1={v1}",  # no t
    "t={t}",  # no v1
    "t={t},v1=",
    "t=,v1={v1}",
    "t=soon,v1={v1}",
    "t=-{t},v1={v1}",
    "t=+{t},v1={v1}",
    "t={t}.5,v1={v1}",
    "t=١٧٦٧٢٢٥٦٠٠,v1={v1}",  # Arabic-Indic digits: int() reads them, a header must not
    "t={t},t={t2},v1={v1}",  # two different timestamps: ambiguous
    "t=" + "9" * 5000 + ",v1={v1}",  # int() of this raises ValueError
    "t={t},v1=é" + "0" * 63,  # non-ASCII: compare_digest on str would raise TypeError
    "t={t},v1={v1}\u00e9",
    "t={t};v1={v1}",
]


@pytest.mark.parametrize("template", MALFORMED)
def test_a_malformed_header_fails_cleanly(template: str) -> None:
    good = sign(KEY, BODY, T0)
    header = template.replace("{t}", str(T0)).replace("{t2}", str(T0 + 1))
    header = header.replace("{v1}", _v1(good))
    assert verify(KEY, BODY, good, now=T0)
    assert verify(KEY, BODY, header, now=T0) is False


def test_no_header_at_all_fails_cleanly() -> None:
    assert verify(KEY, BODY, None, now=T0) is False


class _Clock:
    """Unix time for the sender; each backoff pause lasts ``pause`` seconds on it."""

    def __init__(self, now: float, pause: float) -> None:
        self.now, self.pause = now, pause

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += self.pause


def test_each_delivery_attempt_is_signed_afresh_over_real_http() -> None:
    """A retry gets its own timestamp and signature: one that comes after the first attempt's
    window is still accepted, and the first attempt's signature, replayed then, is not."""
    clock = _Clock(T0, pause=400)
    with running(KEY) as capture:
        capture.script["/hook"] = [503, 200]
        secrets = {"HOOK_URL": capture.url + "/hook", "HOOK_SECRET": KEY}
        result = deliver(HOOK, MESSAGE, secrets=secrets.get, sleep=clock.sleep, clock=clock.time)
        first, retry = capture.at("/hook")
    assert (result.ok, result.attempts) == (True, 2)
    assert [first["verified"], retry["verified"]] == [True, True]  # capture.py's own check
    assert first["raw"] == retry["raw"]  # the same body...
    assert (first["timestamp"], retry["timestamp"]) == (str(T0), str(T0 + 400))  # ...re-signed
    sig1, sig2 = first["headers"]["X-Warden-Signature"], retry["headers"]["X-Warden-Signature"]
    assert sig1.startswith(f"t={T0},v1=")
    assert verify(KEY, first["raw"], sig1, now=T0)
    assert verify(KEY, retry["raw"], sig2, now=T0 + 400)
    assert not verify(KEY, first["raw"], sig1, now=T0 + 400)  # the first one, replayed late


def _documented_verifier() -> Any:
    """The ``python`` block of docs/alerting.md's "Verifying the webhook signature", executed."""
    text = ALERTING_DOC.read_text()
    section = text[text.index("### Verifying the webhook signature") :]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "expected one python block in the section"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(ALERTING_DOC), "exec"), namespace)  # noqa: S102 - our own doc
    return namespace["verify_warden_signature"]


def test_the_documented_verifier_accepts_a_real_delivery() -> None:
    check = _documented_verifier()
    with running(KEY) as capture:
        secrets = {"HOOK_URL": capture.url + "/hook", "HOOK_SECRET": KEY}
        assert deliver(HOOK, MESSAGE, secrets=secrets.get, clock=lambda: T0).ok
        assert deliver(HOOK, MESSAGE, secrets=secrets.get).ok  # the real clock, as deployed
        fixed, live = capture.at("/hook")
    header = fixed["headers"]["X-Warden-Signature"]
    assert check(KEY, fixed["raw"], header, now=T0)
    assert not check(KEY, fixed["raw"], header, now=T0 + 301)  # replayed after the window
    assert not check(KEY, fixed["raw"] + b" ", header, now=T0)
    assert not check("another-key", fixed["raw"], header, now=T0)
    # As a receiver calls it, on its own clock: a delivery made just now is fresh.
    assert check(KEY, live["raw"], live["headers"]["X-Warden-Signature"])


def _cases() -> list[tuple[str, bytes, str | None, float]]:
    good = sign(KEY, BODY, T0)
    v1 = _v1(good)
    cases = [
        ("valid", BODY, good, T0),
        ("tampered body", BODY + b" ", good, T0),
        ("tampered t", BODY, good.replace(f"t={T0}", f"t={T0 + 1}"), T0),
        ("replayed", BODY, good, T0 + 301),
        ("from the future", BODY, good, T0 - 301),
        ("lenient", BODY, f"x=1, v1={'0' * 64},v1={v1.upper()} ,t={T0}", T0),
        ("leading zeros in t", BODY, f"t=0{T0},v1={v1}", T0),
        ("none", BODY, None, T0),
    ]
    for i, template in enumerate(MALFORMED):
        header = template.replace("{t}", str(T0)).replace("{t2}", str(T0 + 1))
        cases.append((f"malformed {i}: {template[:20]}", BODY, header.replace("{v1}", v1), T0))
    return cases


def test_the_documented_verifier_decides_as_the_library_does() -> None:
    check = _documented_verifier()
    decided = {
        name: (check(KEY, body, header, now=now), verify(KEY, body, header, now=now))
        for name, body, header, now in _cases()
    }
    assert all(doc == lib for doc, lib in decided.values()), decided
    assert [name for name, (doc, _) in decided.items() if doc] == ["valid", "lenient"]


def test_the_documented_example_header_is_real() -> None:
    text = ALERTING_DOC.read_text()
    (header,) = re.findall(r"^X-Warden-Signature: (t=\d+,v1=[0-9a-f]{64})$", text, re.MULTILINE)
    (stamp,) = re.findall(r"^X-Warden-Timestamp: (\d+)$", text, re.MULTILINE)
    assert "`example-secret`" in text
    assert 'the body `{"seq": 1}`' in text
    assert header == sign("example-secret", b'{"seq": 1}', int(stamp))
    assert _documented_verifier()("example-secret", b'{"seq": 1}', header, now=int(stamp))
