"""Pins agree across the requirement files, and the deps-check tooling reads them right (offline).

The consistency checks are real: bump a pin in requirements.txt without ``make lock`` and the
lock disagrees; add a dependency to pyproject.toml without pinning it and the functions would
deploy an unpinned package.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from warden_local.audit import CLEAN, NOT_AUDITED, VULNERABLE, summarise
from warden_local.outdated import (
    Groups,
    Latest,
    PinError,
    bump,
    by_name,
    collect,
    disagreements,
    parse_pins,
    report,
)

ROOT = Path(__file__).resolve().parents[1]


def _pins(path: Path) -> dict[str, str]:
    return {p.key: p.version for p in parse_pins(path)}


# -- the project's files ---------------------------------------------------------------------


def test_runtime_and_dev_pins_equal_the_lock():
    lock = by_name(parse_pins(ROOT / "constraints.txt"))
    for name in ("requirements.txt", "requirements-dev.txt"):
        assert disagreements(parse_pins(ROOT / name), lock) == [], (
            f"{name} and constraints.txt disagree: bump pins in {name}, then `make lock`"
        )


def test_every_direct_dependency_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(ROOT / "requirements.txt")
    problems = []
    for line in project["dependencies"]:
        req = Requirement(line)
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name}: in pyproject.toml but not pinned in requirements.txt")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}=={pinned} is outside pyproject.toml's range {line!r}")
    assert problems == []


def test_side_environments_share_the_locks_versions():
    """bench/requirements-drift.txt says it computes with the lock's numpy, pyarrow, scipy."""
    lock = _pins(ROOT / "constraints.txt")
    drift = _pins(ROOT / "bench/requirements-drift.txt")
    shared = {k: v for k, v in drift.items() if k in {"numpy", "pyarrow", "scipy"}}
    assert shared == {k: lock[k] for k in shared}
    assert set(shared) == {"numpy", "pyarrow", "scipy"}


def test_cloud_build_audits_with_the_pinned_pip_audit():
    pinned = _pins(ROOT / "requirements-audit.txt")["pip-audit"]
    used = re.findall(r"pip-audit==([\w.]+)", (ROOT / "cloudbuild.yaml").read_text())
    assert used, "cloudbuild.yaml no longer installs a pinned pip-audit"
    assert set(used) == {pinned}, f"cloudbuild.yaml uses {used}, requirements-audit.txt {pinned}"


def test_every_requirement_file_parses_as_exact_pins():
    groups = collect(ROOT)
    assert groups.problems == []
    keys = {pin.key for group, pin in groups.order if group == "runtime"}
    assert {"scikit-learn", "numpy", "functions-framework"} <= keys


# -- parsing ---------------------------------------------------------------------------------


def test_parse_pins_comments_includes_markers_extras(tmp_path):
    (tmp_path / "base.txt").write_text("# runtime\nNumPy==2.4.6  # inline\n\nscipy==1.17.1\n")
    (tmp_path / "dev.txt").write_text(
        "-r base.txt\n"
        "pytest==9.2.0\t# tab comment\n"
        "--requirement=extra/more.txt\n"
        'tomli==2.0.1 ; python_version < "3.11"\n'
        "uvicorn[standard]==0.54.0\n"
    )
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra/more.txt").write_text("ruff==0.17.5\n")
    pins = parse_pins(tmp_path / "dev.txt")
    assert [(p.name, p.version) for p in pins] == [
        ("NumPy", "2.4.6"),
        ("scipy", "1.17.1"),
        ("pytest", "9.2.0"),
        ("ruff", "0.17.5"),
        ("tomli", "2.0.1"),
        ("uvicorn", "0.54.0"),
    ]
    assert (pins[0].key, pins[0].file.name, pins[0].line) == ("numpy", "base.txt", 2)
    assert pins[4].marker == 'python_version < "3.11"'


@pytest.mark.parametrize(
    "line",
    [
        "numpy>=2",
        "numpy~=2.4",
        "numpy==2.*",
        "numpy",
        "numpy==2.4.6,<3",
        "pkg @ https://example.invalid/pkg-1.0.tar.gz",
        "--index-url https://example.invalid/simple",
        "-e .",
        "not a requirement ==",
    ],
)
def test_parse_pins_rejects_anything_but_exact_pins(tmp_path, line):
    (tmp_path / "r.txt").write_text(f"ok==1.0\n{line}\n")
    with pytest.raises(PinError, match=r"r\.txt:2"):
        parse_pins(tmp_path / "r.txt")


def test_parse_pins_circular_and_missing_includes(tmp_path):
    (tmp_path / "a.txt").write_text("-r b.txt\n")
    (tmp_path / "b.txt").write_text("-r a.txt\n")
    with pytest.raises(PinError, match="circular"):
        parse_pins(tmp_path / "a.txt")
    (tmp_path / "c.txt").write_text("-r gone.txt\n")
    with pytest.raises(PinError, match=r"gone\.txt.*included from"):
        parse_pins(tmp_path / "c.txt")


def test_conflicting_pins_and_disagreements(tmp_path):
    (tmp_path / "r.txt").write_text("numpy==2.4.6\nNumPy==2.4.5\n")
    with pytest.raises(PinError, match=r"pinned to 2\.4\.6"):
        by_name(parse_pins(tmp_path / "r.txt"))
    (tmp_path / "req.txt").write_text("numpy==2.4.6\nscipy==1.17.1\nrequests==2.34.2\n")
    (tmp_path / "lock.txt").write_text("numpy==2.4.5\nscipy==1.17.1\n")
    problems = disagreements(
        parse_pins(tmp_path / "req.txt"), by_name(parse_pins(tmp_path / "lock.txt"))
    )
    assert len(problems) == 2
    assert "numpy==2.4.6" in problems[0]
    assert "2.4.5" in problems[0]
    assert "requests==2.34.2" in problems[1]
    assert "missing from the lock" in problems[1]


# -- outdated report -------------------------------------------------------------------------


def test_bump_kinds():
    assert bump("2.4.6", "2.4.6") == ""
    assert bump("2.4.6", "2.4.5") == ""
    assert bump("2.4.6", "2.4.7") == "patch"
    assert bump("2.4.6", "2.5.0") == "minor"
    assert bump("2.4.6", "3.0.0") == "MAJOR"
    assert bump("0.66b2", "0.67b0") == "minor"


def test_report_lists_direct_pins_first_and_says_when_the_index_was_unreachable(tmp_path):
    (tmp_path / "r.txt").write_text("scikit-learn==1.9.1\nruff==0.17.5\ncloudevents==1.12.0\n")
    a, b, c = parse_pins(tmp_path / "r.txt")
    groups = Groups(order=[("runtime", a), ("dev", b), ("lock", c)])
    latest = Latest(versions={"scikit-learn": "1.9.1", "ruff": "0.17.6", "cloudevents": "2.2.0"})
    lines = report(groups, latest)
    rows = [ln for ln in lines if ln.startswith("  ") and "→" in ln]
    assert [r.split()[1] for r in rows] == ["ruff", "cloudevents"]
    assert rows[0].endswith("patch")
    assert rows[1].endswith("MAJOR")
    assert "2 of 3 pins behind" in lines[-1]
    assert not any("WARNING" in ln for ln in lines)

    latest = Latest(unknown={"scikit-learn": "ERROR: no answer"}, trouble=["WARNING: Retrying"])
    lines = report(groups, latest, show_all=True)
    assert lines[0].startswith("WARNING: pip could not reach the package index")
    assert "unknown (ERROR: no answer)" in "\n".join(lines)
    assert "3 unknown" in lines[-1]


# -- audit verdicts --------------------------------------------------------------------------


def test_audit_counts_skipped_packages_as_not_audited():
    """What this machine gets: pip-audit skips every package yet says 'no known vulnerabilities'."""
    report_ = {
        "dependencies": [
            {
                "name": "numpy",
                "skip_reason": "Dependency not found on PyPI and could not be audited",
            },
            {
                "name": "scipy",
                "skip_reason": "Dependency not found on PyPI and could not be audited",
            },
        ],
        "fixes": [],
    }
    code, lines = summarise(report_)
    assert code == NOT_AUDITED
    assert "NOT AUDITED: 2 of 2" in lines[0]
    assert "nothing was audited" in lines[0]
    assert "Cloud Build" in lines[-1]


def test_audit_verdicts_clean_vulnerable_and_no_report():
    clean = {"dependencies": [{"name": "numpy", "version": "2.4.6", "vulns": []}]}
    assert summarise(clean) == (CLEAN, ["pip-audit: no known vulnerabilities in 1 pinned packages"])

    vulnerable = {
        "dependencies": [
            {"name": "numpy", "version": "2.4.6", "vulns": []},
            {
                "name": "requests",
                "version": "2.19.0",
                "vulns": [
                    {
                        "id": "PYSEC-2018-28",
                        "fix_versions": ["2.20.0"],
                        "aliases": ["CVE-2018-18074"],
                    }
                ],
            },
            {"name": "scipy", "skip_reason": "not found"},
        ]
    }
    code, lines = summarise(vulnerable)
    assert code == VULNERABLE
    assert lines[0].startswith("pip-audit: 1 known vulnerability in 1 pinned package")
    assert "requests==2.19.0: PYSEC-2018-28 (CVE-2018-18074); fixed in: 2.20.0" in lines[1]
    assert any("NOT AUDITED: 1 of 3" in ln for ln in lines)

    code, lines = summarise(
        None, "Traceback ...\nConnectionError: Failed to resolve 'api.osv.dev'\n"
    )
    assert code == NOT_AUDITED
    assert "Failed to resolve" in lines[1]
