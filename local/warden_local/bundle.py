"""Deterministic source bundles of the Cloud Functions: ``python -m warden_local.bundle``.

For each folder ``functions/NAME`` this writes, under the output folder (default ``build/``):

* ``NAME/``: ``main.py``, the modules of the ``warden`` package that ``main.py`` reaches (its
  import closure, read from source by :mod:`warden_local.imports`; plus the estimator
  factories warden.yaml may name, and the data files of :data:`PACKAGE_DATA`), the root
  ``warden.yaml`` and a ``requirements.txt`` pinning the bundle's full dependency closure.
  ``warden.cli`` and the local tooling never ship;
* ``NAME.zip``: exactly that tree, byte-identical for identical inputs: entries sorted, no
  directory entries, fixed timestamp, mode, host system and compression level, so the sha256
  (and Terraform's ``bundles/NAME-<sha256 prefix>.zip`` object) changes only when content does;
* ``bundles.json``: ``{NAME: {"sha256", "files", "requirements"}}`` for the zips in the folder.

Pins come from ``constraints.txt``; the closure is walked over the installed distributions'
``Requires-Dist`` with markers evaluated for this interpreter (the test environment, which
matches the functions' runtime), so a bundle fails to build rather than drift from the lock.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from warden_local.imports import ModuleGraph, imports_of_file, read_graph

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "bundles.json"

#: Shipped in every bundle whatever main.py imports: warden.yaml may name a factory in them
#: (``factory: warden.factories.MODULE:FUNCTION``), which is imported by name at run time.
ALWAYS_SHIPPED = ("warden.factories",)
#: Non-Python files a module needs beside it (glob patterns relative to its package folder).
PACKAGE_DATA: dict[str, tuple[str, ...]] = {"warden.report": ("templates/*.html.j2",)}

FULL = "full"
#: Direct runtime requirements of each bundle (a folder under functions/): FULL is every package
#: of requirements.txt, a tuple names a subset of it. A new function folder must be added here.
REQUIREMENT_SETS: dict[str, Literal["full"] | tuple[str, ...]] = {
    "health": FULL,  # ?deep=true loads champions: scikit-learn, joblib
    "monitor_model": FULL,
    "housekeeping": FULL,  # a daily job: cold start matters less than one simple set
    "retrain_model": FULL,
    # The router answers webhooks and model events, often from a cold instance: installing and
    # importing the scientific stack would only slow its cold start, and its code path imports
    # none of it (tests/test_bundle.py runs the built bundle with those imports blocked).
    "route_alerts": (
        "functions-framework",
        "google-cloud-storage",  # routing state (warden.alerts.state)
        "requests",  # slack and webhook receivers
        "google-cloud-pubsub",  # pubsub receivers
        "google-cloud-logging",  # structured logs (warden.logs)
        "pydantic",  # warden.yaml and alerting validation
        "PyYAML",
        "croniter",  # schedule validation when warden.yaml loads
    ),
}

# Fixed zip metadata: nothing of the host (time, umask, OS) may reach the archive.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644  # regular file, rw-r--r--
ZIP_CREATE_SYSTEM = 3  # Unix, whichever OS builds
ZIP_COMPRESSLEVEL = 9


class BundleError(Exception):
    """The bundle cannot be built as asked (unknown name, lock disagreement, missing file)."""


@dataclass(frozen=True)
class Pin:
    name: str  # spelled as in constraints.txt
    version: str

    def line(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Bundle:
    name: str
    sha256: str
    files: int
    requirements: tuple[str, ...]
    zip_path: Path


# -- requirements ----------------------------------------------------------------------------


def _requirement_lines(path: Path) -> Iterable[tuple[int, str]]:
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            yield number, line


def _parse(path: Path, number: int, line: str) -> Requirement:
    try:
        return Requirement(line)
    except InvalidRequirement as exc:
        raise BundleError(f"{path.name}:{number}: {line!r}: {exc}") from exc


def read_requirements(path: Path) -> dict[NormalizedName, Requirement]:
    """requirements.txt → {canonical name: requirement}."""
    return {
        canonicalize_name(req.name): req
        for req in (_parse(path, n, line) for n, line in _requirement_lines(path))
    }


def read_constraints(path: Path) -> dict[NormalizedName, Pin]:
    """constraints.txt (pip freeze) → {canonical name: pin}; every line must be ``name==x``."""
    pins: dict[NormalizedName, Pin] = {}
    for number, line in _requirement_lines(path):
        req = _parse(path, number, line)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or req.marker or req.extras:
            raise BundleError(f"{path.name}:{number}: {line!r} is not a plain name==version pin")
        pins[canonicalize_name(req.name)] = Pin(req.name, specs[0].version)
    return pins


@dataclass(frozen=True)
class Installed:
    """What a build needs of an installed distribution, from one read of its metadata."""

    version: str
    requires: tuple[str, ...]


def _installed() -> dict[NormalizedName, Installed]:
    # First on sys.path wins, as for imports; one scan instead of one per lookup, and one parse
    # of each METADATA (a Distribution re-parses it on every .version or .requires).
    found: dict[NormalizedName, Installed] = {}
    for dist in metadata.distributions():
        md = dist.metadata
        name = canonicalize_name(md["Name"])
        if name not in found:
            found[name] = Installed(md["Version"], tuple(md.get_all("Requires-Dist") or ()))
    return found


def _wanted(req: Requirement, extras: Iterable[str], env: Mapping[str, str]) -> bool:
    """Does ``req`` apply here, for a dependent installed with ``extras``?"""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras))


def resolve(
    direct: Iterable[Requirement],
    pins: Mapping[NormalizedName, Pin],
    installed: Mapping[NormalizedName, Installed],
    env: Mapping[str, str],
) -> list[Pin]:
    """The transitive closure of ``direct`` over installed metadata, as constraints.txt pins."""
    extras_seen: dict[NormalizedName, set[str]] = {}
    todo = [req for req in direct if _wanted(req, (), env)]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = {canonicalize_name(e) for e in req.extras}
        if name in extras_seen and extras <= extras_seen[name]:
            continue
        extras_seen.setdefault(name, set()).update(extras)
        dist = _checked(name, req, pins, installed)
        for dep in dist.requires:
            dep_req = Requirement(dep)
            if _wanted(dep_req, extras_seen[name], env):
                todo.append(dep_req)
    return sorted((pins[n] for n in extras_seen), key=lambda p: canonicalize_name(p.name))


def _checked(
    name: NormalizedName,
    req: Requirement,
    pins: Mapping[NormalizedName, Pin],
    installed: Mapping[NormalizedName, Installed],
) -> Installed:
    """The installed distribution for ``req``, once it agrees with constraints.txt."""
    pin = pins.get(name)
    if pin is None:
        raise BundleError(f"{req.name}: needed by the bundle but not pinned in constraints.txt")
    if not req.specifier.contains(pin.version, prereleases=True):
        raise BundleError(f"{req.name}: constraints.txt pins {pin.version}, {req} asks otherwise")
    dist = installed.get(name)
    if dist is None:
        raise BundleError(f"{pin.name}: pinned {pin.version} but not installed; run make install")
    if Version(dist.version) != Version(pin.version):
        raise BundleError(
            f"{pin.name}: installed {dist.version} but constraints.txt pins {pin.version}; "
            "run make install (or make lock)"
        )
    return dist


def direct_requirements(
    name: str, requirements: Mapping[NormalizedName, Requirement]
) -> list[Requirement]:
    """The direct requirements of bundle ``name``, from its entry in REQUIREMENT_SETS."""
    chosen = REQUIREMENT_SETS[name]
    if chosen == FULL:
        return list(requirements.values())
    missing = [n for n in chosen if canonicalize_name(n) not in requirements]
    if missing:
        raise BundleError(f"REQUIREMENT_SETS[{name!r}]: {missing} not in requirements.txt")
    return [requirements[canonicalize_name(n)] for n in chosen]


def requirements_txt(name: str, pins: Sequence[Pin]) -> bytes:
    header = (
        f"# {name}: generated by warden_local.bundle from requirements.txt and constraints.txt;\n"
        "# the full dependency closure, pinned. Do not edit: rebuild.\n"
    )
    return (header + "".join(p.line() + "\n" for p in pins)).encode()


# -- files and zips ----------------------------------------------------------------------------


def function_folders(root: Path) -> list[str]:
    """Folders under functions/ holding a main.py, checked against REQUIREMENT_SETS."""
    folders = sorted(p.parent.name for p in (root / "functions").glob("*/main.py"))
    if unknown := sorted(set(folders) - REQUIREMENT_SETS.keys()):
        raise BundleError(f"functions/{unknown[0]}: add it to REQUIREMENT_SETS in {__name__}")
    return folders


def package_graph(root: Path) -> ModuleGraph:
    """The import graph of ``root``'s shared/warden package."""
    package = root / "shared" / "warden"
    if not (package / "__init__.py").is_file():
        raise BundleError(f"{package}: no warden package there")
    return read_graph(package)


def source_files(root: Path, name: str, graph: ModuleGraph | None = None) -> dict[str, bytes]:
    """Archive path → content of a bundle's sources (requirements.txt is added by the caller).

    ``graph`` is the shared package's import graph when the caller has read it already (a build
    reads it once for all its bundles: parsing the package is most of a build's time)."""
    folder = root / "functions" / name
    extra = sorted(p.name for p in folder.glob("*.py") if p.name != "main.py")
    if extra:  # they would be missing at runtime: main.py is all a function folder may hold
        raise BundleError(f"functions/{name}: only main.py is bundled, found {extra}")
    files = {
        "main.py": (folder / "main.py").read_bytes(),
        "warden.yaml": (root / "warden.yaml").read_bytes(),
    }
    package = root / "shared" / "warden"
    if graph is None:
        graph = package_graph(root)
    wanted = graph.closure([*imports_of_file(folder / "main.py", graph), *ALWAYS_SHIPPED])
    wanted |= {m for m in graph.files for a in ALWAYS_SHIPPED if m.startswith(a + ".")}
    for module in sorted(wanted):
        path = graph.files[module]
        files["/".join(("warden", *path.relative_to(package).parts))] = path.read_bytes()
        for pattern in PACKAGE_DATA.get(module, ()):
            for data in sorted(path.parent.glob(pattern)):
                files["/".join(("warden", *data.relative_to(package).parts))] = data.read_bytes()
    return files


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """A zip of ``files`` that depends on their paths and contents only."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname in sorted(files):
            info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
            info.external_attr = ZIP_FILE_MODE << 16
            info.create_system = ZIP_CREATE_SYSTEM
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[arcname], compresslevel=ZIP_COMPRESSLEVEL)
    return buffer.getvalue()


def _write_tree(folder: Path, files: Mapping[str, bytes]) -> None:
    shutil.rmtree(folder, ignore_errors=True)  # from scratch: stale files never reach a bundle
    for arcname, content in files.items():
        path = folder / arcname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _write_atomic(path: Path, content: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- build -------------------------------------------------------------------------------------


def build(
    names: Sequence[str] | None = None, *, root: Path = ROOT, out: Path | None = None
) -> list[Bundle]:
    """Build the named bundles (default: every function folder) and update bundles.json."""
    root = root.resolve()
    out = (out or root / "build").resolve()
    known = function_folders(root)
    if unknown := [n for n in names or () if n not in known]:
        raise BundleError(f"unknown bundle {unknown[0]!r}; known: {', '.join(known)}")
    requirements = read_requirements(root / "requirements.txt")
    pins = read_constraints(root / "constraints.txt")
    installed, env = _installed(), default_environment()
    out.mkdir(parents=True, exist_ok=True)
    graph = package_graph(root)
    built = []
    for name in sorted(set(names or known)):
        closure = resolve(direct_requirements(name, requirements), pins, installed, env)
        files = source_files(root, name, graph)
        files["requirements.txt"] = requirements_txt(name, closure)
        _write_tree(out / name, files)
        data = zip_bytes(files)
        _write_atomic(out / f"{name}.zip", data)
        lines = tuple(p.line() for p in closure)
        built.append(Bundle(name, _sha256(data), len(files), lines, out / f"{name}.zip"))
    _write_manifest(out, built)
    return built


def _write_manifest(out: Path, built: Sequence[Bundle]) -> None:
    """bundles.json describes the zips in ``out``: earlier entries stay while their zip matches."""
    path = out / MANIFEST
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entries = {
        name: entry
        for name, entry in entries.items()
        if (out / f"{name}.zip").is_file()
        and _sha256((out / f"{name}.zip").read_bytes()) == entry.get("sha256")
    }
    for b in built:
        entries[b.name] = {
            "sha256": b.sha256,
            "files": b.files,
            "requirements": list(b.requirements),
        }
    _write_atomic(path, (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warden_local.bundle",
        description="Build deterministic function bundles (zip + requirements) and bundles.json.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="function folders (default: all)")
    parser.add_argument("--out", type=Path, help="output folder (default: <repo>/build)")
    args = parser.parse_args(argv)
    try:
        bundles = build(args.names, out=args.out)
    except BundleError as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 1
    for b in bundles:
        print(f"{b.name:<16} {b.sha256[:12]}  {b.files:>3} files  {len(b.requirements):>3} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
