"""``warden alerts``: the router's aggregation groups and their alerts, read-only.

Alertmanager's ``amtool alert query`` over the router's state in the alert bucket
(:meth:`warden.alerts.state.AlertState.groups_view`): each group's receiver, its alerts with
their silenced/inhibited state as the next flush will see it, what was last sent and when the
next notification is due. "Now" is the runtime's clock (the local stack's virtual clock there).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from warden.cli.common import emit, handled, runtime_for

if TYPE_CHECKING:
    from warden.alerts.state import AlertView, GroupView

__all__ = ["alerts"]

SUMMARY_WIDTH = 60


@click.command("alerts")
@click.argument("matchers", nargs=-1)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also resolved alerts, tombstones and groups with nothing firing.",
)
@click.option(
    "-a", "--active", is_flag=True, help="Active alerts (not muted); with -s/-i, any of them."
)
@click.option("-s", "--silenced", is_flag=True, help="Silenced alerts (see -a).")
@click.option("-i", "--inhibited", is_flag=True, help="Inhibited alerts (see -a).")
@click.option(
    "-r",
    "--receiver",
    default=None,
    help="Only groups whose receiver matches this regex (anchored).",
)
@click.pass_context
@handled
def alerts(
    ctx: click.Context,
    matchers: tuple[str, ...],
    show_all: bool,
    active: bool,
    silenced: bool,
    inhibited: bool,
    receiver: str | None,
) -> None:
    """Alert groups with their alerts, receivers, silenced/inhibited state and next notification.

    MATCHERS select alerts by label, as in `warden silence add`: 'model="customer-segments"'
    'severity=~"warning|error"'. By default every group with a firing alert is listed, muted
    alerts included and marked; -a, -s, -i keep only alerts in those states (combinable).
    """
    from warden.config.alerting import matches_all, parse_matcher
    from warden.errors import ConfigError

    try:
        parsed = [parse_matcher(m) for m in matchers]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="MATCHERS") from None
    try:
        wanted_receiver = None if receiver is None else re.compile(receiver)
    except re.error as exc:
        raise click.BadParameter(f"{receiver!r}: {exc}", param_hint="--receiver") from None
    chosen = (("active", active), ("silenced", silenced), ("inhibited", inhibited))
    states = {name for name, on in chosen if on}

    rt = runtime_for(ctx)
    config = rt.alerting
    if config is None:
        raise ConfigError(
            f"{rt.settings.config_path}: alerting: no routing configured, so no alerts to list"
        )
    now = rt.clock().timestamp()
    groups = rt.alert_state().groups_view(config=config, now=now)
    names = {a.fingerprint: a.labels for g in groups for a in g.alerts}

    def keep(a: AlertView) -> bool:
        if not show_all and a.status != "firing":
            return False
        if not matches_all(parsed, a.labels):
            return False
        return not states or any(_in_state(a, s) for s in states)

    filtered = not show_all or bool(parsed) or bool(states)
    shown: list[tuple[GroupView, list[AlertView]]] = []
    for g in groups:
        if wanted_receiver is not None and not wanted_receiver.fullmatch(g.receiver):
            continue
        kept = [a for a in g.alerts if keep(a)]
        if kept or not filtered:
            shown.append((g, kept))

    data = [
        {
            **g.to_json(),
            "alerts": [a.to_json() for a in kept],
            "next_notification_in": None if g.next_at is None else g.next_at - now,
        }
        for g, kept in shown
    ]
    if shown:
        text = "\n\n".join(_group_text(g, kept, now, names, show_all) for g, kept in shown)
    elif parsed or states or wanted_receiver is not None:
        text = "no alerts match"
    else:
        text = "no alert groups" if show_all else "no alerts firing"
    emit(ctx, data, text)


def _in_state(a: AlertView, state: str) -> bool:
    if state == "active":
        return not (a.silenced or a.inhibited)
    return a.silenced if state == "silenced" else a.inhibited


# -- text ----------------------------------------------------------------------------------------


def _span(seconds: float) -> str:
    """3s, 4m30s, 3h57m, 2d4h."""
    s = round(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(epoch: float, now: float) -> str:
    return f"{_span(now - epoch)} ago" if epoch <= now else f"in {_span(epoch - now)}"


def _next_text(g: GroupView, now: float) -> str:
    reason, at = g.next_reason, g.next_at
    pending = g.pending or {}
    if at is None:
        why = "every firing alert is muted" if g.firing else "nothing to send"
        return f"next notification: none ({why})"
    if reason == "pending_claim":
        return (
            f"next notification: being sent by {pending.get('claimed_by')} "
            f"(claimed {_ago(float(pending['claimed_at']), now)}; re-sent {_ago(at, now)} "
            "if not confirmed)"
        )
    if reason == "stale_claim":
        return (
            f"next notification: due now, re-sending the unconfirmed claim of "
            f"{pending.get('claimed_by')} (claimed {_ago(float(pending['claimed_at']), now)})"
        )
    why = reason.replace("_", " ")
    if at <= now:
        return f"next notification: due now, at the next flush ({why} passed {_ago(at, now)})"
    return f"next notification: in {_span(at - now)}, {_when(at)} ({why})"


def _group_text(
    g: GroupView,
    kept: list[AlertView],
    now: float,
    names: dict[str, dict[str, str]],
    show_all: bool,
) -> str:
    labels = " ".join(f'{k}="{v}"' for k, v in g.group_labels.items()) or "(no group labels)"
    lines = [
        f"{labels}  receiver={g.receiver}  route={g.route_id}  firing={g.firing}/{len(g.alerts)}",
        "  " + _next_text(g, now),
    ]
    sent = "never" if g.last_notified_at is None else _ago(g.last_notified_at, now)
    lines[-1] += f"; last sent: {sent}"
    failure = g.last_failure
    if failure and (g.last_notified_at is None or failure["at"] > g.last_notified_at):
        lines.append(
            f"  last delivery failed {_ago(float(failure['at']), now)}: {failure['error']}"
        )
    rows = [["STATUS", "STATE", "ALERTNAME", "MODEL", "SEVERITY", "STARTED", "SUMMARY"]]
    notes: list[list[str]] = []
    for a in kept:
        summary = a.annotations.get("summary", "")
        if len(summary) > SUMMARY_WIDTH:
            summary = summary[: SUMMARY_WIDTH - 1] + "…"
        rows.append(
            [
                a.status,
                a.state,
                a.labels.get("alertname", "-"),
                a.labels.get("model", "-"),
                a.labels.get("severity", "-"),
                _ago(a.starts_at, now),
                summary,
            ]
        )
        notes.append(_mute_notes(a, names))
    table = _table(rows)
    lines.append("  " + table[0])
    for row, note in zip(table[1:], notes, strict=True):
        lines.append("  " + row)
        lines.extend("      " + n for n in note)
    if show_all and g.tombstones:
        lines.append(
            f"  {len(g.tombstones)} tombstone(s) (resolved and dropped; a late redelivery is "
            "ignored): " + ", ".join(sorted(g.tombstones))
        )
    return "\n".join(lines)


def _mute_notes(a: AlertView, names: dict[str, dict[str, str]]) -> list[str]:
    out = [f"silenced by {sid} (warden silence expire {sid})" for sid in a.silenced_by]
    for fp in a.inhibited_by:
        src = names.get(fp, {})
        what = " ".join(f'{k}="{src[k]}"' for k in ("alertname", "model") if k in src)
        out.append(f"inhibited by {what} ({fp})".replace("  ", " "))
    return out


def _table(rows: Iterable[list[str]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
