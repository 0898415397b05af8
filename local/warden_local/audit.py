"""Known vulnerabilities in the pins: ``python -m warden_local.audit`` (``make deps-check``).

Runs pip-audit (from its own virtualenv, .venv-audit) on requirements.txt and constraints.txt
with ``--no-deps --disable-pip``, as Cloud Build's pip-audit step does: both files are fully
pinned, so exactly the pinned versions are audited and nothing is resolved or installed.

pip-audit on its own reports a package it could not look up as *skipped* and still exits 0
with "No known vulnerabilities found". Here a skip counts as a failure to audit, because that
is what happens when PyPI's vulnerability feed (its JSON API) cannot be reached: every package
is skipped and nothing was checked. Exit codes: 0 audited, nothing known; 1 vulnerabilities
found; 2 could not audit (feed unreachable, packages skipped, pip-audit missing or failing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILES = ("requirements.txt", "constraints.txt")
DEFAULT_PIP_AUDIT = ROOT / ".venv-audit" / "bin" / "pip-audit"
CLEAN, VULNERABLE, NOT_AUDITED = 0, 1, 2
ELSEWHERE = "The audit also runs in Cloud Build's pip-audit step (cloudbuild.yaml)."


def summarise(report: dict[str, Any] | None, stderr: str = "") -> tuple[int, list[str]]:
    """(exit code, lines) from pip-audit's JSON report (None: it produced none)."""
    if report is None:
        last = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()][-1:]
        return NOT_AUDITED, [
            "pip-audit: NOT AUDITED: pip-audit produced no report; its vulnerability service "
            "is probably unreachable from this machine.",
            *(f"  last error: {ln[:300]}" for ln in last),
            ELSEWHERE,
        ]
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    vulnerable = [d for d in deps if d.get("vulns")]
    lines: list[str] = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed release yet"
            aliases = ", ".join(vuln.get("aliases", []))
            lines.append(
                f"  {dep['name']}=={dep.get('version')}: {vuln.get('id')}"
                + (f" ({aliases})" if aliases else "")
                + f"; fixed in: {fixes}"
            )
    audited = len(deps) - len(skipped)
    code = CLEAN
    if vulnerable:
        code = VULNERABLE
        count = sum(len(d["vulns"]) for d in vulnerable)
        lines.insert(
            0,
            f"pip-audit: {count} known vulnerabilit{'y' if count == 1 else 'ies'} in "
            f"{len(vulnerable)} pinned package(s):",
        )
    if skipped:
        code = code or NOT_AUDITED
        reason = skipped[0]["skip_reason"]
        everything = " (all of them: nothing was audited)" if not audited else ""
        lines += [
            f"pip-audit: NOT AUDITED: {len(skipped)} of {len(deps)} pinned packages could not "
            f"be looked up{everything}, e.g. {reason!r}.",
            "  pip-audit asks PyPI's JSON API about each release: where that API cannot be "
            "reached (an index proxy that serves pip's simple pages only), every lookup fails.",
            ELSEWHERE,
        ]
    if code == CLEAN:
        lines.append(f"pip-audit: no known vulnerabilities in {audited} pinned packages")
    return code, lines


def run(pip_audit: Path, files: Sequence[Path], timeout: float = 600) -> tuple[int, list[str]]:
    if not pip_audit.exists():
        return NOT_AUDITED, [f"pip-audit: NOT AUDITED: {pip_audit} is missing (make deps-check)"]
    cmd = [str(pip_audit), "--progress-spinner=off", "--no-deps", "--disable-pip"]
    cmd += ["--format=json"]
    for path in files:
        cmd += ["-r", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return NOT_AUDITED, [f"pip-audit: NOT AUDITED: no answer within {timeout:.0f}s", ELSEWHERE]
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        report = None
    return summarise(report if isinstance(report, dict) else None, proc.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=[ROOT / f for f in DEFAULT_FILES])
    parser.add_argument("--pip-audit", type=Path, default=DEFAULT_PIP_AUDIT)
    args = parser.parse_args(argv)
    print(f"pip-audit --no-deps --disable-pip on {', '.join(p.name for p in args.files)} …")
    code, lines = run(args.pip_audit, args.files)
    print("\n".join(lines), file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
