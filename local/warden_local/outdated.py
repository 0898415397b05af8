"""Pins with newer releases: ``python -m warden_local.outdated [--all]`` (``make deps-check``).

Reads the ``name==version`` pins of requirements.txt (direct runtime), requirements-dev.txt
(direct dev), constraints.txt (the full lock) and the side virtualenvs' files, then asks pip for
the latest release of each, through pip's own configured index (this module makes no request of
its own):

* the project environment (.venv, where this runs): one ``pip list --outdated`` call;
* a pin that is not what .venv has installed, or that lives in a side virtualenv:
  ``pip index versions NAME``.

It prints ``NAME pinned → latest``, direct pins first, and exits 0: it informs, it does not gate.
If pip cannot reach the index it says so (the table is then incomplete); requirement files that
cannot be parsed (anything but ``name==version``, ``-r`` includes and comments) exit 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[2]

#: (group, file) in display order: direct runtime pins, direct dev pins, then the lock.
PROJECT_FILES = (
    ("runtime", "requirements.txt"),
    ("dev", "requirements-dev.txt"),
    ("lock", "constraints.txt"),
)
#: Pins of the side virtualenvs (not installed in .venv): looked up one by one.
SIDE_FILES = (
    ("checkov", "requirements-checkov.txt"),
    ("audit", "requirements-audit.txt"),
    ("bench", "bench/requirements-drift.txt"),
)
#: pip's words when it cannot reach an index (it then carries on with what it has).
UNREACHABLE_HINTS = ("Retrying (", "Could not fetch URL", "NewConnectionError", "ConnectTimeout")


class PinError(ValueError):
    """A requirement file holds something other than exact pins, comments and ``-r`` includes."""


@dataclass(frozen=True)
class Pin:
    name: str  # as spelled in the file
    version: str
    file: Path
    line: int
    marker: str | None = None

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)

    @property
    def where(self) -> str:
        try:
            return f"{self.file.relative_to(ROOT)}:{self.line}"
        except ValueError:
            return f"{self.file}:{self.line}"


def parse_pins(path: Path, _stack: tuple[Path, ...] = ()) -> list[Pin]:
    """The pins of a requirements file, in file order, ``-r`` includes expanded in place.

    Accepted: blank lines, comments (whole-line, or after `` #``), ``-r FILE`` /
    ``--requirement FILE`` (relative to the including file) and ``name[extras]==version[; marker]``.
    Anything else (``>=``, ``~=``, ``==1.*``, URLs, other pip options) raises :class:`PinError`.
    """
    path = path.resolve()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise PinError(f"{path}: circular -r include ({chain})")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        where = f" (included from {_stack[-1]})" if _stack else ""
        raise PinError(f"{path}: cannot read{where}: {exc.strerror}") from None
    pins: list[Pin] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        here = f"{path.name}:{number}"
        if line.startswith("-"):
            option, _, value = line.replace("=", " ", 1).partition(" ")
            if option in ("-r", "--requirement") and value.strip():
                pins.extend(parse_pins(path.parent / value.strip(), (*_stack, path)))
                continue
            raise PinError(f"{here}: {line!r}: only -r includes are supported here")
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise PinError(f"{here}: {line!r}: {exc}") from None
        specs = list(req.specifier)
        if req.url or len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise PinError(f"{here}: {line!r}: not an exact pin (name==version)")
        pins.append(
            Pin(req.name, specs[0].version, path, number, str(req.marker) if req.marker else None)
        )
    return pins


def by_name(pins: Iterable[Pin]) -> dict[str, Pin]:
    """{canonical name: pin}; the same package pinned twice must agree (markers aside)."""
    out: dict[str, Pin] = {}
    for pin in pins:
        seen = out.get(pin.key)
        if seen and seen.version != pin.version and not (seen.marker or pin.marker):
            raise PinError(
                f"{pin.name} is pinned to {seen.version} ({seen.where}) and to {pin.version} "
                f"({pin.where})"
            )
        out.setdefault(pin.key, pin)
    return out


def disagreements(pins: Iterable[Pin], lock: dict[str, Pin]) -> list[str]:
    """Pins whose version differs from the lock's, or that the lock lacks."""
    out = []
    for pin in pins:
        locked = lock.get(pin.key)
        if locked is None:
            out.append(f"{pin.name}=={pin.version} ({pin.where}) is missing from the lock")
        elif locked.version != pin.version:
            out.append(
                f"{pin.name}=={pin.version} ({pin.where}) but the lock has "
                f"{locked.version} ({locked.where})"
            )
    return out


@dataclass
class Groups:
    """Each package once, in the first group that pins it (runtime, dev, lock, side files)."""

    order: list[tuple[str, Pin]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def collect(root: Path = ROOT) -> Groups:
    groups = Groups()
    seen: set[str] = set()
    project: dict[str, dict[str, Pin]] = {}
    for group, name in (*PROJECT_FILES, *SIDE_FILES):
        path = root / name
        if not path.exists() and (group, name) in SIDE_FILES:
            continue
        own = [p for p in parse_pins(path) if p.file == path.resolve()]  # includes: their group
        project[group] = by_name(own)
        for pin in own:
            if (group, name) in PROJECT_FILES and pin.key in seen:
                continue
            seen.add(pin.key)
            groups.order.append((group, pin))
    lock = project["lock"]
    for group in ("runtime", "dev"):
        groups.problems += disagreements(project[group].values(), lock)
    return groups


# -- asking pip ------------------------------------------------------------------------------


def _pip(args: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    cmd += ["--retries", "1", "--timeout", "20"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _trouble(stderr: str) -> list[str]:
    return [ln.strip() for ln in stderr.splitlines() if any(h in ln for h in UNREACHABLE_HINTS)]


@dataclass
class Latest:
    versions: dict[str, str] = field(default_factory=dict)  # canonical name → latest
    unknown: dict[str, str] = field(default_factory=dict)  # canonical name → why
    trouble: list[str] = field(default_factory=list)  # pip's connection warnings


def installed() -> dict[str, str]:
    proc = _pip(["list", "--format=json", "--exclude-editable"])
    if proc.returncode:
        raise RuntimeError(f"pip list failed: {proc.stderr.strip()[-500:]}")
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(proc.stdout)}


def latest_installed(latest: Latest, have: dict[str, str]) -> None:
    """Latest releases of everything installed here, from one ``pip list --outdated``."""
    proc = _pip(["list", "--outdated", "--format=json", "--exclude-editable"])
    latest.trouble += _trouble(proc.stderr)
    if proc.returncode:
        why = proc.stderr.strip().splitlines()[-1:] or ["pip list --outdated failed"]
        latest.unknown.update(dict.fromkeys(have, why[0]))
        return
    behind = {canonicalize_name(d["name"]): d["latest_version"] for d in json.loads(proc.stdout)}
    for key, version in have.items():
        latest.versions[key] = behind.get(key, version)


def latest_one(name: str) -> tuple[str | None, str, list[str]]:
    """(latest, why not, connection warnings) from ``pip index versions --json NAME``."""
    proc = _pip(["index", "versions", "--json", name], timeout=120)
    trouble = _trouble(proc.stderr)
    if proc.returncode:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
        return None, (errors or ["pip index versions failed"])[-1], trouble
    return json.loads(proc.stdout).get("latest"), "", trouble


def lookup(
    pins: Sequence[tuple[str, Pin]],
    *,
    installed_fn: Callable[[], dict[str, str]] = installed,
    one: Callable[[str], tuple[str | None, str, list[str]]] = latest_one,
) -> Latest:
    latest = Latest()
    have = installed_fn()
    project = {pin.key for group, pin in pins if group in {g for g, _ in PROJECT_FILES}}
    as_installed = {k: v for k, v in have.items() if k in project}
    latest_installed(latest, as_installed)
    # Pins that .venv does not hold at the pinned version, and the side virtualenvs' pins.
    rest = sorted(
        {
            pin.key: pin.name
            for group, pin in pins
            if pin.key not in latest.versions or have.get(pin.key) != pin.version
        }.items()
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        for (key, _), (version, why, trouble) in zip(
            rest, pool.map(lambda kv: one(kv[1]), rest), strict=True
        ):
            latest.trouble += trouble
            if version:
                latest.versions[key] = version
                latest.unknown.pop(key, None)
            else:
                latest.versions.pop(key, None)
                latest.unknown[key] = why
    return latest


# -- report ----------------------------------------------------------------------------------


def bump(pinned: str, latest: str) -> str:
    try:
        a, b = Version(pinned), Version(latest)
    except InvalidVersion:
        return "?"
    if b <= a:
        return ""
    if b.major != a.major:
        return "MAJOR"
    return "minor" if b.minor != a.minor else "patch"


def report(groups: Groups, latest: Latest, *, show_all: bool = False) -> list[str]:
    rows = []
    behind = 0
    for group, pin in groups.order:
        new = latest.versions.get(pin.key)
        kind = bump(pin.version, new) if new else "?"
        if kind and kind != "?":
            behind += 1
        if show_all or kind:
            shown = new or f"unknown ({latest.unknown.get(pin.key, 'no answer')})"
            rows.append(f"  {group:<8} {pin.name:<36} {pin.version:>12} → {shown:<12} {kind}")
    out = []
    if latest.trouble:
        first = latest.trouble[0]
        out += [
            f"WARNING: pip could not reach the package index ({len(latest.trouble)} connection "
            "warnings): the latest versions below may be missing or stale. First warning:",
            f"  {first[:240]}{'…' if len(first) > 240 else ''}",
        ]
    out.append("Pins with newer releases (group, name, pinned → latest on pip's index, bump):")
    out += rows or ["  (none)"]
    unknown = sum(1 for _, pin in groups.order if pin.key not in latest.versions)
    out.append(
        f"{behind} of {len(groups.order)} pins behind"
        + (f", {unknown} unknown" if unknown else "")
        + ". Update procedure: docs/dependencies.md"
    )
    if groups.problems:
        out += ["Pins that disagree with constraints.txt (run make lock):"]
        out += [f"  {p}" for p in groups.problems]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list current pins too")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        groups = collect(args.root)
    except PinError as exc:
        print(f"outdated: {exc}", file=sys.stderr)
        return 2
    latest = lookup(groups.order)
    print("\n".join(report(groups, latest, show_all=args.all)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
