"""Ten thousand hostile payloads at route_alerts: never a 5xx.

Its own file so that ``--dist loadfile`` can run it beside the rest of test_route_alerts.py (it is
the suite's longest single test); the fixtures are that file's.
"""

from __future__ import annotations

import copy
import json
import random

import test_route_alerts as base

# The fixtures of test_route_alerts.py, by the names the test asks for.
capture, rt, client = base.capture, base.rt, base.client
incident, post, TOKEN = base.incident, base.post, base.TOKEN


def _hostile(rng: random.Random, valid: dict) -> tuple[bytes, dict]:
    """One malformed or hostile request body (and extra headers)."""
    choice = rng.randrange(9)
    if choice == 0:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), {}
    if choice == 1:  # truncated JSON
        text = json.dumps(valid)
        return text[: rng.randrange(1, len(text))].encode(), {}
    if choice == 2:  # a wrong type at a random field
        payload = copy.deepcopy(valid)
        key = rng.choice(list(payload["incident"]))
        payload["incident"][key] = rng.choice([None, 1.5, -1, [], {}, "x" * 50, True, "🙃"])
        return json.dumps(payload).encode(), {}
    if choice == 3:  # a missing field
        payload = copy.deepcopy(valid)
        payload["incident"].pop(rng.choice(list(payload["incident"])))
        return json.dumps(payload).encode(), {}
    if choice == 4:  # deep nesting
        depth = rng.randrange(100, 5000)
        return ("[" * depth + "]" * depth).encode(), {}
    if choice == 5:  # odd encodings
        return json.dumps(valid).encode(rng.choice(["utf-16", "utf-32", "latin-1"])), {}
    if choice == 6:  # wrong top-level shapes
        return json.dumps(
            rng.choice(
                [
                    [],
                    "1.2",
                    12,
                    None,
                    {"version": "1.1"},
                    {"version": "1.2"},
                    {"version": "1.2", "incident": []},
                ]
            )
        ).encode(), {}
    if choice == 7:  # hostile label names and values
        payload = copy.deepcopy(valid)
        payload["incident"]["policy_user_labels"] = {
            "x" * rng.randrange(1, 300): "\u0000<script>" * rng.randrange(1, 50),
            "a\nb": "c\r\nSet-Cookie: x=1",
        }
        return json.dumps(payload).encode(), {}
    # header injection attempts ride along a body that is otherwise fine-ish
    return json.dumps(valid).encode(), {
        "Content-Type": "application/json; charset=utf-8",
        "X-Forwarded-For": "1.2.3.4\r\nX-Evil: 1",
    }


def test_fuzz_ten_thousand_hostile_payloads_never_5xx(client) -> None:
    rng = random.Random(1234)
    valid = incident()
    statuses: dict[int, int] = {}
    for _ in range(int(__import__("os").environ.get("FUZZ_N", "10000"))):
        body, headers = _hostile(rng, valid)
        try:
            resp = client.post(
                f"/?auth_token={TOKEN}",
                data=body,
                headers={"Content-Type": "application/json", **headers},
            )
        except ValueError:  # the test client itself refuses a header with a newline
            continue
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        assert resp.status_code < 500, body[:200]
        if resp.status_code >= 400:
            assert resp.get_json()["error"]
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) > 5_000
    huge = client.post(
        f"/?auth_token={TOKEN}",
        data=b"{" + b" " * (300 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413


# --- every documented notification, through both doors -----------------------------------------
