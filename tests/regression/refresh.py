"""Refresh tests/regression/baseline.json deliberately: ``make regression-baseline [CONFIRM=yes]``.

Trains the example models twice (the result must be deterministic), prints the baseline diff
old → new, and writes the file only with ``--yes``. Refresh only when a metric change is intended
and understood (a new estimator, a reviewed library upgrade), never to make a failing guard pass.

Run from the repository root: ``.venv/bin/python tests/regression/refresh.py [--yes]``.
"""

from __future__ import annotations

import argparse
import sys
import time

from regression_guard import (
    BASELINE,
    CONFIG,
    ROOT,
    TOLERANCE,
    build_baseline,
    dump_baseline,
    load_baseline,
    train_all,
)


def diff(old: dict | None, new: dict) -> list[str]:
    lines = []
    old_models = (old or {}).get("models", {})
    for name, entry in new["models"].items():
        before = old_models.get(name, {})
        for metric, value in entry["metrics"].items():
            was = before.get("metrics", {}).get(metric)
            if was is None:
                lines.append(f"  {name} {metric}: (new) → {value:.6f}")
                continue
            change = (value - was) / abs(was) if was else 0.0
            flag = "" if abs(change) <= TOLERANCE else "   ← beyond the guard's tolerance"
            lines.append(f"  {name} {metric}: {was:.6f} → {value:.6f} ({change:+.2%}){flag}")
        if before and before.get("estimator") != entry["estimator"]:
            lines.append(f"  {name} estimator: {before.get('estimator')} → {entry['estimator']}")
    for name in sorted(set(old_models) - set(new["models"])):
        lines.append(f"  {name}: removed (no longer an example model in warden.yaml)")
    old_libs = (old or {}).get("libraries", {})
    for lib, version in new["libraries"].items():
        if old_libs.get(lib) != version:
            lines.append(f"  {lib}: {old_libs.get(lib, '(none)')} → {version}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yes", action="store_true", help="write baseline.json (default: dry run)")
    args = parser.parse_args(argv)

    from warden.config import load_config

    config = load_config(CONFIG)
    started = time.monotonic()
    first = train_all(config)
    second = train_all(config)
    unstable = [
        f"  {name}: {first[name].metrics} vs {second[name].metrics}"
        for name in first
        if first[name].metrics != second[name].metrics
    ]
    if unstable:
        print(
            "refusing: two trainings gave different metrics (not deterministic):", file=sys.stderr
        )
        print("\n".join(unstable), file=sys.stderr)
        return 1
    new = build_baseline(first, config)
    old = load_baseline() if BASELINE.exists() else None
    print(f"trained {', '.join(first)} twice in {time.monotonic() - started:.1f}s (identical)")
    print(f"{BASELINE.relative_to(ROOT)}: old → new")
    print("\n".join(diff(old, new)) or "  (no metric or library change)")
    if not args.yes:
        print(
            "\ndry run: nothing written. Refresh only for an intended, understood change "
            "(new estimator, reviewed library upgrade), never to make a failing guard pass;\n"
            "then: make regression-baseline CONFIRM=yes  (or: tests/regression/refresh.py --yes)"
        )
        return 0
    BASELINE.write_text(dump_baseline(new), encoding="utf-8")
    print(f"\nwrote {BASELINE.relative_to(ROOT)}: commit it with the change that explains it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
