"""Hold terraform/ to the providers' real schemas, offline: ``python -m warden_local.tfschema``.

``terraform validate`` needs the provider plugins, which cannot be downloaded here. Their
schemas still reach us through npm: ``@cdktf/provider-google`` 16.12.1 is generated from
hashicorp/google 6.50.0 and ``@cdktf/provider-random`` 12.0.1 from hashicorp/random 3.7.2 (each
package.json says so under ``cdktf.provider``, which the fetch verifies). ``versions.tf`` pins
exactly those provider versions, and this check insists on it.

**Fetching** (:func:`package_dir`). ``npm pack SPEC`` downloads the tarball (npm's own cache in
``~/.npm`` makes a re-fetch cheap); its sha512 must be the one pinned here. Python's tarfile then
extracts only ``package.json`` and ``lib/<type>/**/*.js|*.d.ts`` (source maps stripped), refusing
any member that is not a regular file or whose path could leave the folder. Everything happens in
a temporary folder beside the cache, renamed into place at the end (``.cache/tfschema/
provider-google-16.12.1/``): a concurrent fetch (pytest-xdist) either wins the rename or finds the
finished folder. The extraction also indexes every ``lib`` folder by the
``<Class>.tfResourceType = "<type>"`` it declares and the cdktf base class it extends (resource,
data source or provider), so a type maps to its folder exactly.

**Reading a schema** (:class:`Schemas`), on demand, one type at a time. cdktf generates, per
block, a ``<name>ToHclTerraform(struct)`` function (``synthesizeHclAttributes()`` for the
resource itself) whose ``attrs`` object lists every argument and nested block in snake_case::

    lifecycle_rule: {
        value: cdktf.listMapperHcl(storageBucketLifecycleRuleToHclTerraform, true)(this._li...),
        isBlock: true,
        type: "list",
        storageClassType: "StorageBucketLifecycleRuleList",
    },

A regular expression takes each entry apart: ``isBlock`` tells an argument from a block; the
nested block's own ``...ToHclTerraform`` function (``index.js`` or, for big resources,
``index-structs/structsN.js``) gives its content; ``listMapperHcl`` marks a block that may repeat,
a direct call one that may appear at most once (cdktf's ``OutputReference``: max_items 1); and
``struct.camelName`` / ``this._camelName`` names the TypeScript property. The ``.d.ts`` then
gives which arguments are required: the ``readonly camelName: T`` properties without ``?`` of the
block's interface (``<Class>Config`` for the resource; for a nested block, the interface in its
``export declare function ...ToHclTerraform(struct?: ...)`` signature). Computed-only attributes
are not in ``attrs``: setting one is an error in Terraform too. Each parse cross-checks itself
(every ``isBlock`` entry understood, every property found in its interface) and raises
:class:`SchemaError` when the generated code no longer has the expected shape.

**Checking** (:func:`check`). Every ``.tf`` file under the folder (the root module and
``modules/*``) is parsed with python-hcl2's own grammar (its lark tree, which keeps line
numbers). Each ``resource``, ``data`` and ``provider`` block is held against its schema at every
depth: unknown type, unknown argument or block (with close-match suggestions), an argument
written as a block or a block as an argument, a block that may appear once given twice, a
missing required argument or block (a ``dynamic`` block counts). ``dynamic "x"`` must name a
nested block; its ``content`` is checked as an ``x`` block, its own arguments (``for_each``,
``iterator``, ``labels``) too. Meta-arguments are Terraform's (``count``, ``for_each``,
``depends_on``, ``provider``, ``lifecycle`` with its own schema, ``provisioner``, ``connection``;
``timeouts`` only where the schema has it). Calls of local modules are held against the module's
``variable`` blocks, and ``required_providers`` must pin each checked provider to exactly the
version its schema came from. Resources of a provider without a schema package here
(google-beta, null, ...) and remote modules are listed as unchecked, never skipped silently.

What only a real ``terraform plan`` shows: the types of values, whether expressions and
references resolve, cross-field rules (conflicts_with, exactly_one_of, at_least_one_of),
enum values, min/max items beyond "at most one", and everything the Google APIs validate.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import hcl2
from lark import Token, Tree

__all__ = [
    "DEFAULT_CACHE",
    "PACKAGES",
    "BlockSchema",
    "Finding",
    "Module",
    "Package",
    "Report",
    "SchemaError",
    "Schemas",
    "Unchecked",
    "check",
    "main",
    "package_dir",
    "read_module",
]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = ROOT / ".cache" / "tfschema"
#: Bumped whenever what the extraction writes changes: an older cache folder is then replaced.
LAYOUT = 1
MANIFEST = "tfschema.json"

Kind = Literal["resource", "data", "provider"]


@dataclass(frozen=True)
class Package:
    """A cdktf prebuilt provider on npm and the Terraform provider it was generated from."""

    source: str  # required_providers source, e.g. hashicorp/google
    provider_version: str  # the provider version the bindings were generated from
    npm: str
    version: str
    integrity: str  # npm's sha512 of the tarball

    @property
    def spec(self) -> str:
        return f"{self.npm}@{self.version}"

    @property
    def folder(self) -> str:
        return f"{self.npm.rsplit('/', 1)[-1]}-{self.version}"


#: By required_providers source. random 3.7.2 is the newest 3.x (versions.tf allowed 3.6 - 4.0).
PACKAGES: dict[str, Package] = {
    "hashicorp/google": Package(
        source="hashicorp/google",
        provider_version="6.50.0",
        npm="@cdktf/provider-google",
        version="16.12.1",
        integrity="sha512-KqNA/5RiFT07r0PSZ6/07cJ2zESUgbj1JchVj21iBFBZVUbD+578xA/k8eq/r0cbyEgLmg9eYWeVslaYah4DCQ==",
    ),
    "hashicorp/random": Package(
        source="hashicorp/random",
        provider_version="3.7.2",
        npm="@cdktf/provider-random",
        version="12.0.1",
        integrity="sha512-yE9fteVRxekOl6MhJeM6sac1VkljCwGFrZxozq0aE11zTBmB4oQBr3nk9Z1A2C5C3IB/0jKmabYDNPqgrZDfNw==",
    ),
}


class SchemaError(RuntimeError):
    """The schema package cannot be fetched, or its generated code is not what this expects."""


# --- fetching -----------------------------------------------------------------------------------

#: The members worth extracting: package.json and each type's JS/TS (not the 100 MB .jsii).
_WANTED = re.compile(
    r"package/(?:package\.json|lib/[A-Za-z0-9_-]+/(?:index-structs/)?[A-Za-z0-9_-]+\.(?:js|d\.ts))"
)
_SOURCE_MAP = b"\n//# sourceMappingURL="
_CLASS = re.compile(
    rb"^class (\w+) extends cdktf\.Terraform(Resource|DataSource|Provider) \{", re.MULTILINE
)
_KINDS: dict[bytes, Kind] = {
    b"Resource": "resource",
    b"DataSource": "data",
    b"Provider": "provider",
}


def _complete(folder: Path, package: Package) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("layout") == LAYOUT and manifest.get("spec") == package.spec


def package_dir(
    package: Package = PACKAGES["hashicorp/google"], cache: Path = DEFAULT_CACHE
) -> Path:
    """The extracted package (fetched with ``npm pack`` on first use), e.g.
    ``.cache/tfschema/provider-google-16.12.1``."""
    final = cache / package.folder
    if _complete(final, package):
        return final
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaError(
            f"npm is not on PATH; it fetches {package.spec} (the schema of {package.source} "
            f"{package.provider_version}). Install Node.js with npm (Debian: "
            "`apt-get install -y npm`), then run `make tfschema-cache`."
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{package.folder}.") as tmp:
        tarball = _npm_pack(npm, package, Path(tmp))
        staging = Path(tmp) / "package"
        _extract(tarball, staging, package)
        for attempt in range(3):
            try:
                staging.rename(final)
                break
            except OSError:
                if _complete(final, package):  # another process finished first
                    break
                # A folder of an older layout (or a half-removed one): move it aside, retry.
                with suppress(OSError):
                    final.rename(Path(tmp) / f"stale{attempt}")
        else:
            raise SchemaError(f"could not move the extracted {package.spec} to {final}")
    return final


def _npm_pack(npm: str, package: Package, dest: Path) -> Path:
    cmd = [npm, "pack", package.spec, "--pack-destination", str(dest), "--json"]
    cmd += ["--prefer-offline", "--loglevel=error"]
    try:
        done = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SchemaError(f"`npm pack {package.spec}` could not run: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-1500:]
        raise SchemaError(
            f"`npm pack {package.spec}` failed (exit {done.returncode}); it needs the npm "
            f"registry or npm's cache (~/.npm):\n{tail}"
        )
    tarballs = sorted(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise SchemaError(f"`npm pack {package.spec}` left {len(tarballs)} tarballs in {dest}")
    digest = hashlib.sha512(tarballs[0].read_bytes()).digest()
    integrity = "sha512-" + base64.b64encode(digest).decode()
    if integrity != package.integrity:
        raise SchemaError(
            f"{tarballs[0].name}: sha512 {integrity} is not the pinned {package.integrity}"
        )
    return tarballs[0]


def _extract(tarball: Path, dest: Path, package: Package) -> None:
    """Safe, partial extraction into *dest* (which must not exist), then the type index."""
    dest.mkdir(parents=True)
    root = dest.resolve()
    types: dict[str, dict[str, str]] = {"resource": {}, "data": {}, "provider": {}}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            rel = PurePosixPath(member.name)
            if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0] != "package":
                raise SchemaError(f"{tarball.name}: refusing member {member.name!r}")
            if not _WANTED.fullmatch(member.name):
                continue
            if not member.isfile():
                raise SchemaError(f"{tarball.name}: {member.name} is not a regular file")
            target = (root / rel.relative_to("package")).resolve()
            if not target.is_relative_to(root):
                raise SchemaError(f"{tarball.name}: {member.name} would leave {dest}")
            stream = tar.extractfile(member)
            if stream is None:
                raise SchemaError(f"{tarball.name}: cannot read {member.name}")
            data = stream.read()
            if member.name.endswith(".js"):
                data = data.split(_SOURCE_MAP, 1)[0] + b"\n"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if len(rel.parts) == 4 and rel.name == "index.js":
                found = _declared_type(data)
                if found is not None:
                    types[found[0]][found[1]] = rel.parts[2]
    try:
        meta = json.loads((dest / "package.json").read_text())
        provider = meta["cdktf"]["provider"]
    except (OSError, ValueError, KeyError) as exc:
        raise SchemaError(f"{package.spec}: no cdktf.provider in package.json") from exc
    expected = (f"registry.terraform.io/{package.source}", package.provider_version)
    if (provider.get("name"), provider.get("version")) != expected:
        raise SchemaError(
            f"{package.spec} was generated from {provider}, not {expected[0]} {expected[1]}"
        )
    if not types["resource"]:
        raise SchemaError(f"{package.spec}: no resource type found under lib/")
    manifest = {"layout": LAYOUT, "spec": package.spec, "provider": provider, "types": types}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _declared_type(js: bytes) -> tuple[Kind, str] | None:
    match = _CLASS.search(js)
    if match is None:
        return None
    declared = re.search(
        rb"^" + re.escape(match.group(1)) + rb'\.tfResourceType = "([^"]+)";', js, re.MULTILINE
    )
    if declared is None:
        return None
    return _KINDS[match.group(2)], declared.group(1).decode()


# --- reading a schema ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockSchema:
    """Arguments and nested blocks of one block type, and which of them are required."""

    attributes: frozenset[str]
    blocks: Mapping[str, BlockSchema]
    required: frozenset[str] = frozenset()
    single: frozenset[str] = frozenset()  # nested blocks that may appear at most once
    open_blocks: frozenset[str] = frozenset()  # nested blocks whose content is not checked

    def names(self) -> set[str]:
        return set(self.attributes) | set(self.blocks) | set(self.open_blocks)


_ENTRY = re.compile(
    r'^[ \t]*"?(?P<name>\w+)"?: \{\s*\n'
    r"[ \t]*value: (?P<value>[^\n]*),\s*\n"
    r"[ \t]*isBlock: (?P<block>true|false),\s*\n"
    r'[ \t]*type: "(?P<type>\w+)",\s*\n'
    r'[ \t]*storageClassType: "[^"]*",\s*\n'
    r"[ \t]*\},?[ \t]*$",
    re.MULTILINE,
)
_STRUCT_FN = re.compile(
    r"^function (\w+)ToHclTerraform\(struct\) \{\n(.*?)^\}$",
    re.MULTILINE | re.DOTALL,
)
_SYNTH = re.compile(
    r"^    synthesizeHclAttributes\(\) \{\n(.*?)^    \}$",
    re.MULTILINE | re.DOTALL,
)
_NESTED_FN = re.compile(r"(?:\b([A-Za-z_$][\w$]*)\.)?\b(\w+)ToHclTerraform\b")
_PROPERTY = re.compile(r"\b(?:struct\.|this\._)(\w+)")
_DECLARE = re.compile(
    r"^export declare function (\w+)ToHclTerraform\(struct\?: ([^)]*)\): any;", re.M
)
_INTERFACE = re.compile(r"^export interface (\w+)(?: extends [\w.]+)? \{\n(.*?)^\}$", re.M | re.S)
_MEMBER = re.compile(r"^    readonly (\w+)(\?)?:", re.MULTILINE)


@dataclass
class _Entry:
    name: str
    camel: str
    is_block: bool
    nested: str | None  # ToHclTerraform function of a nested block
    single: bool


class _LibFolder:
    """One ``lib/<type>/`` folder: its struct functions and interfaces, parsed lazily."""

    def __init__(self, folder: Path, kind: Kind, type_name: str) -> None:
        self.folder = folder
        js = [folder / "index.js", *sorted((folder / "index-structs").glob("*.js"))]
        ts = [folder / "index.d.ts", *sorted((folder / "index-structs").glob("*.d.ts"))]
        self.js = "\n".join(p.read_text() for p in js)
        self.ts = "\n".join(p.read_text() for p in ts)
        declared = _declared_type(self.js.encode())
        if declared != (kind, type_name):
            raise SchemaError(f"{folder}: declares {declared}, not the {kind} {type_name}")
        match = _CLASS.search(self.js.encode())
        assert match is not None  # _declared_type found it
        self.class_name = match.group(1).decode()
        self.functions = {m.group(1): m.group(2) for m in _STRUCT_FN.finditer(self.js)}
        self.interfaces = {m.group(1): m.group(2) for m in _INTERFACE.finditer(self.ts)}
        self.signatures = {m.group(1): m.group(2) for m in _DECLARE.finditer(self.ts)}
        self._cache: dict[str, BlockSchema] = {}

    def root(self) -> BlockSchema:
        synth = _SYNTH.search(self.js)
        if synth is None:
            raise SchemaError(f"{self.folder}: no synthesizeHclAttributes()")
        return self._schema(synth.group(1), f"{self.class_name}Config", "synthesizeHclAttributes")

    def _nested(self, function: str) -> BlockSchema:
        if function not in self._cache:
            if function not in self.functions:
                raise SchemaError(f"{self.folder}: no function {function}ToHclTerraform")
            self._cache[function] = BlockSchema(frozenset(), {})  # cycle guard
            union = [t.strip() for t in self.signatures.get(function, "").split("|")]
            interfaces = [t for t in union if t in self.interfaces]
            if len(interfaces) != 1:
                raise SchemaError(f"{self.folder}: no interface for {function}ToHclTerraform")
            body = self.functions[function]
            self._cache[function] = self._schema(body, interfaces[0], function)
        return self._cache[function]

    def _schema(self, body: str, interface: str, where: str) -> BlockSchema:
        entries = [self._entry(m, where) for m in _ENTRY.finditer(body)]
        if len(entries) != body.count("isBlock:"):
            raise SchemaError(f"{self.folder}: cannot read every entry of {where}")
        if interface not in self.interfaces:
            raise SchemaError(f"{self.folder}: no interface {interface}")
        members = {
            m.group(1): m.group(2) is None for m in _MEMBER.finditer(self.interfaces[interface])
        }
        required = set()
        for entry in entries:
            # cdktf renames a property that clashes with its own API (build -> buildAttribute).
            prop = next((p for p in (entry.camel, f"{entry.camel}Attribute") if p in members), None)
            if prop is None:
                raise SchemaError(f"{self.folder}: {interface} has no {entry.camel} ({entry.name})")
            if members[prop]:
                required.add(entry.name)
        blocks = {e.name: self._nested(e.nested) for e in entries if e.is_block and e.nested}
        return BlockSchema(
            attributes=frozenset(e.name for e in entries if not e.is_block),
            blocks=blocks,
            required=frozenset(required),
            single=frozenset(e.name for e in entries if e.is_block and e.single),
        )

    def _entry(self, match: re.Match[str], where: str) -> _Entry:
        name, value = match.group("name"), match.group("value")
        prop = _PROPERTY.search(value)
        if prop is None:
            raise SchemaError(f"{self.folder}: {where}: cannot tell the property of {name}")
        nested = [fn for qualifier, fn in _NESTED_FN.findall(value) if qualifier != "cdktf"]
        is_block = match.group("block") == "true"
        if is_block and len(nested) != 1:
            raise SchemaError(f"{self.folder}: {where}: block {name} has no single content type")
        if not is_block and nested:
            raise SchemaError(f"{self.folder}: {where}: argument {name} has a nested type")
        return _Entry(
            name=name,
            camel=prop.group(1),
            is_block=is_block,
            nested=nested[0] if is_block else None,
            single=is_block and "listMapperHcl(" not in value,
        )


class Schemas:
    """Schemas by provider source, kind and type, read on demand from the cached packages."""

    def __init__(self, cache: Path = DEFAULT_CACHE) -> None:
        self.cache = cache
        self._folders: dict[str, Path] = {}
        self._manifests: dict[str, dict[str, dict[str, str]]] = {}
        self._schemas: dict[tuple[str, Kind, str], BlockSchema | None] = {}

    def package(self, source: str) -> Path:
        if source not in self._folders:
            self._folders[source] = package_dir(PACKAGES[source], self.cache)
            manifest = json.loads((self._folders[source] / MANIFEST).read_text())
            self._manifests[source] = manifest["types"]
        return self._folders[source]

    def types(self, source: str, kind: Kind) -> dict[str, str]:
        self.package(source)
        return self._manifests[source][kind]

    def get(self, source: str, kind: Kind, type_name: str) -> BlockSchema | None:
        """The schema of a resource, data source or provider type; None if there is none."""
        key = (source, kind, type_name)
        if key not in self._schemas:
            folder = self.types(source, kind).get(type_name)
            lib = self.package(source) / "lib"
            self._schemas[key] = (
                None if folder is None else _LibFolder(lib / folder, kind, type_name).root()
            )
        return self._schemas[key]

    def resource(self, type_name: str, source: str = "hashicorp/google") -> BlockSchema | None:
        return self.get(source, "resource", type_name)

    def data_source(self, type_name: str, source: str = "hashicorp/google") -> BlockSchema | None:
        return self.get(source, "data", type_name)


# --- reading Terraform --------------------------------------------------------------------------


@dataclass
class Block:
    """A block as written: type, labels, arguments (name -> line) and nested blocks."""

    type: str
    labels: tuple[str, ...]
    line: int
    attributes: dict[str, int] = field(default_factory=dict)
    expressions: dict[str, str] = field(default_factory=dict)  # argument -> its source text
    blocks: list[Block] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Module:
    """The top-level blocks of one folder's ``.tf`` files, with the file of each."""

    folder: Path
    blocks: list[tuple[Path, Block]]


def _text(node: Tree | Token) -> str:
    if isinstance(node, Token):
        return str(node)
    return "".join(str(t) for t in node.scan_values(lambda v: isinstance(v, Token)))


def _label(node: Tree | Token) -> str:
    text = _text(node)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _read_body(body: Tree, into: Block) -> None:
    for child in body.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "attribute":
            name = _text(child.children[0]).strip()
            line = child.meta.line
            if name in into.attributes:
                into.duplicates.append((name, line))
            into.attributes[name] = line
            into.expressions[name] = _text(child.children[-1]).strip()
        elif child.data == "block":
            into.blocks.append(_read_block(child))


def _read_block(node: Tree) -> Block:
    parts = [
        c for c in node.children if not (isinstance(c, Tree) and c.data == "new_line_or_comment")
    ]
    name, labels, body = None, [], None
    for part in parts:
        if isinstance(part, Token):
            continue  # { and }
        if part.data == "body":
            body = part
        elif name is None:
            name = _text(part).strip()
        else:
            labels.append(_label(part))
    if name is None:
        raise SchemaError(f"line {node.meta.line}: a block without a type")
    block = Block(type=name, labels=tuple(labels), line=node.meta.line)
    if body is not None:
        _read_body(body, block)
    return block


def read_module(folder: Path) -> Module:
    """All ``.tf`` files of one folder, through python-hcl2's grammar (with line numbers)."""
    blocks: list[tuple[Path, Block]] = []
    for path in sorted(folder.glob("*.tf")):
        tree = hcl2.parses_to_tree(path.read_text())
        top = Block(type="", labels=(), line=1)
        for body in tree.children:
            if isinstance(body, Tree) and body.data == "body":
                _read_body(body, top)
        blocks.extend((path, b) for b in top.blocks)
    return Module(folder=folder, blocks=blocks)


def _module_folders(terraform_dir: Path) -> Iterator[Path]:
    folders = {p.parent for p in terraform_dir.rglob("*.tf")}
    for folder in sorted(folders):
        if not any(part.startswith(".") for part in folder.relative_to(terraform_dir).parts):
            yield folder


# --- checking -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    file: Path
    line: int
    address: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.address}: {self.problem}"


@dataclass(frozen=True)
class Unchecked:
    file: Path
    line: int
    address: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.address}: not checked: {self.reason}"


_COUNTED = ("resource", "data source", "provider", "module call", "nested block", "dynamic block")


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)
    addresses: list[str] = field(default_factory=list)  # top-level blocks held to a schema
    providers: set[str] = field(default_factory=set)  # "hashicorp/google 6.50.0"

    def summary(self) -> str:
        parts = ", ".join(
            f"{self.checked[what]} {what}{'s' if self.checked[what] != 1 else ''}"
            for what in _COUNTED
            if self.checked[what]
        )
        against = ", ".join(sorted(self.providers)) or "no provider schema"
        return (
            f"tfschema: {sum(self.checked.values())} blocks checked ({parts}) against {against}; "
            f"{len(self.findings)} finding(s), {len(self.unchecked)} unchecked"
        )


def _cond() -> BlockSchema:
    both = frozenset({"condition", "error_message"})
    return BlockSchema(attributes=both, blocks={}, required=both)


_LIFECYCLE = {
    "resource": BlockSchema(
        attributes=frozenset(
            {"create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by"}
        ),
        blocks={"precondition": _cond(), "postcondition": _cond()},
    ),
    "data": BlockSchema(
        attributes=frozenset(), blocks={"precondition": _cond(), "postcondition": _cond()}
    ),
}
_META_ARGS: dict[str, frozenset[str]] = {
    "resource": frozenset({"count", "for_each", "depends_on", "provider"}),
    "data": frozenset({"count", "for_each", "depends_on", "provider"}),
    "provider": frozenset({"alias", "version"}),
}
_META_BLOCKS: dict[str, frozenset[str]] = {
    "resource": frozenset({"lifecycle", "provisioner", "connection"}),
    "data": frozenset({"lifecycle"}),
    "provider": frozenset(),
}
_MODULE_META = frozenset({"source", "version", "count", "for_each", "depends_on", "providers"})
#: The built-in terraform_data resource (terraform.io/builtin/terraform).
_TERRAFORM_DATA = BlockSchema(attributes=frozenset({"input", "triggers_replace"}), blocks={})
_BUILTIN = "terraform.io/builtin/terraform"


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class _Checker:
    def __init__(self, terraform_dir: Path, schemas: Schemas, report: Report) -> None:
        self.root = terraform_dir
        self.schemas = schemas
        self.report = report
        self.file = terraform_dir

    def find(self, line: int, address: str, problem: str) -> None:
        self.report.findings.append(Finding(self._rel(self.file), line, address, problem))

    def skip(self, line: int, address: str, reason: str) -> None:
        self.report.unchecked.append(Unchecked(self._rel(self.file), line, address, reason))

    def _rel(self, path: Path) -> Path:
        with suppress(ValueError):
            return Path(self.root.name) / path.relative_to(self.root)
        return path

    # --- modules

    def module(self, module: Module) -> None:
        sources = self._required_providers(module)
        for path, block in module.blocks:
            self.file = path
            if block.type in {"resource", "data"}:
                self._resource(block, sources, block.type)
            elif block.type == "provider":
                self._provider(block, sources)
            elif block.type == "module":
                self._module_call(module, block)
            elif block.type == "ephemeral":
                address = "ephemeral." + ".".join(block.labels)
                self.skip(block.line, address, "ephemeral resources have no schema package here")

    def _required_providers(self, module: Module) -> dict[str, str]:
        """Local name -> source, checking that each checked provider is pinned exactly."""
        sources: dict[str, str] = {}
        for path, block in module.blocks:
            if block.type != "terraform":
                continue
            for inner in block.blocks:
                if inner.type != "required_providers":
                    continue
                for name, line in inner.attributes.items():
                    self.file = path
                    expr = inner.expressions[name]
                    source = re.search(r'source\s*=\s*"([^"]+)"', expr)
                    version = re.search(r'version\s*=\s*"([^"]+)"', expr)
                    src = source.group(1) if source else f"hashicorp/{name}"
                    src = src.removeprefix("registry.terraform.io/")
                    sources[name] = src
                    package = PACKAGES.get(src)
                    if package is None:
                        continue
                    pinned = version.group(1).strip() if version else ""
                    if pinned.removeprefix("=").strip() != package.provider_version:
                        self.find(
                            line,
                            f"terraform.required_providers.{name}",
                            f'version "{pinned}" is not "= {package.provider_version}", the '
                            f"version whose schema this check holds the code to "
                            f"({package.spec}); pin it, or move both together",
                        )
        return sources

    def _resource(self, block: Block, sources: dict[str, str], kind: Kind) -> None:
        if len(block.labels) != 2:
            self.find(block.line, kind, f"a {kind} block needs two labels, has {len(block.labels)}")
            return
        type_name, name = block.labels
        address = f"{type_name}.{name}" if kind == "resource" else f"data.{type_name}.{name}"
        local = block.expressions.get("provider", type_name.split("_", 1)[0]).split(".", 1)[0]
        source = sources.get(local, f"hashicorp/{local}")
        if (
            type_name == "terraform_data"
            and kind == "resource"
            and "provider" not in block.attributes
        ):
            schema: BlockSchema | None = _TERRAFORM_DATA
            self.report.providers.add(_BUILTIN)
        elif source in PACKAGES:
            package = PACKAGES[source]
            schema = self.schemas.get(source, kind, type_name)
            self.report.providers.add(f"{source} {package.provider_version}")
            if schema is None:
                known = self.schemas.types(source, kind)
                what = "resource type" if kind == "resource" else "data source"
                self.find(
                    block.line,
                    address,
                    f"unknown {what} {type_name!r} in {source} {package.provider_version}"
                    + _suggest(type_name, known),
                )
                return
        else:
            self.skip(block.line, address, f"no schema package for provider {source!r}")
            return
        self.report.checked["resource" if kind == "resource" else "data source"] += 1
        self.report.addresses.append(address)
        if "count" in block.attributes and "for_each" in block.attributes:
            self.find(block.line, address, "count and for_each cannot both be set")
        self._body(block, schema, address, meta=kind)

    def _provider(self, block: Block, sources: dict[str, str]) -> None:
        local = block.labels[0] if block.labels else ""
        source = sources.get(local, f"hashicorp/{local}")
        address = f"provider.{local}"
        if source not in PACKAGES:
            self.skip(block.line, address, f"no schema package for provider {source!r}")
            return
        schema = self.schemas.get(source, "provider", local)
        if schema is None:
            self.skip(block.line, address, f"{PACKAGES[source].spec} has no provider schema")
            return
        self.report.checked["provider"] += 1
        self.report.addresses.append(address)
        self.report.providers.add(f"{source} {PACKAGES[source].provider_version}")
        self._body(block, schema, address, meta="provider")

    def _module_call(self, module: Module, block: Block) -> None:
        address = "module." + ".".join(block.labels)
        source = re.fullmatch(r'"(\.\.?/[^"$]*)"', block.expressions.get("source", ""))
        if source is None:
            self.skip(block.line, address, "only local module sources are checked")
            return
        folder = (module.folder / source.group(1)).resolve()
        if not any(folder.glob("*.tf")):
            self.find(block.line, address, f"module source {source.group(1)} has no .tf file")
            return
        variables = {
            b.labels[0]: "default" in b.attributes
            for _, b in read_module(folder).blocks
            if b.type == "variable" and b.labels
        }
        schema = BlockSchema(
            attributes=frozenset(variables) | _MODULE_META,
            blocks={},
            required=frozenset(v for v, has_default in variables.items() if not has_default),
        )
        self.report.checked["module call"] += 1
        self.report.addresses.append(address)
        self._body(block, schema, address, meta=None)

    # --- bodies

    def _body(self, block: Block, schema: BlockSchema, address: str, meta: str | None) -> None:
        meta_args = _META_ARGS.get(meta or "", frozenset())
        meta_blocks = _META_BLOCKS.get(meta or "", frozenset())
        names = schema.names() | meta_args | meta_blocks
        present: set[str] = set()
        for name, line in block.duplicates:
            self.find(line, address, f"argument {name!r} is set twice")
        for name, line in block.attributes.items():
            if name in meta_args:
                continue
            if name in schema.attributes:
                present.add(name)
            elif name in schema.blocks or name in meta_blocks:
                self.find(line, address, f"{name!r} is a block, not an argument: {name} {{ ... }}")
            else:
                self.find(line, address, f"unknown argument {name!r}" + _suggest(name, names))
        counts: Counter[str] = Counter()
        for sub in block.blocks:
            if sub.type == "dynamic":
                present |= self._dynamic(sub, schema, address, meta_blocks)
            elif sub.type in meta_blocks:
                self._meta_block(sub, address, meta or "")
            elif sub.type in schema.open_blocks:  # a dynamic block's content: see _dynamic
                present.add(sub.type)
                counts[sub.type] += 1
                if counts[sub.type] == 2:
                    self.find(sub.line, address, f"at most one {sub.type} block is allowed here")
            elif sub.type in schema.blocks:
                present.add(sub.type)
                index = counts[sub.type]
                counts[sub.type] += 1
                single = sub.type in schema.single
                where = f"{address}.{sub.type}" + ("" if single else f"[{index}]")
                if single and index == 1:
                    self.find(sub.line, where, f"at most one {sub.type} block is allowed here")
                if sub.labels:
                    self.find(sub.line, where, f"a {sub.type} block takes no labels")
                self.report.checked["nested block"] += 1
                self._body(sub, schema.blocks[sub.type], where, meta=None)
            elif sub.type in schema.attributes or sub.type in meta_args:
                self.find(
                    sub.line,
                    address,
                    f"{sub.type!r} is an argument, not a block: {sub.type} = ...",
                )
            else:
                self.find(
                    sub.line,
                    address,
                    f"unknown block type {sub.type!r}" + _suggest(sub.type, names),
                )
        for name in sorted(schema.required - present):
            what = "argument" if name in schema.attributes else "block"
            self.find(block.line, address, f"missing required {what} {name!r}")

    def _dynamic(
        self, block: Block, schema: BlockSchema, address: str, meta_blocks: frozenset[str]
    ) -> set[str]:
        if len(block.labels) != 1:
            self.find(block.line, f"{address}.dynamic", "a dynamic block needs one label")
            return set()
        target = block.labels[0]
        where = f"{address}.dynamic.{target}"
        self.report.checked["dynamic block"] += 1
        self._body(block, _DYNAMIC, where, meta=None)
        if target in meta_blocks:
            self.find(block.line, where, f"{target} is a meta-argument: it cannot be dynamic")
            return set()
        if target not in schema.blocks:
            if target in schema.attributes:
                problem = f"{target!r} is an argument: dynamic blocks only generate blocks"
            else:
                problem = f"unknown block type {target!r}" + _suggest(target, schema.blocks)
            self.find(block.line, where, problem)
            return set()
        for content in block.blocks:
            if content.type == "content":
                self.report.checked["nested block"] += 1
                self._body(content, schema.blocks[target], f"{where}.content", meta=None)
        return {target}

    def _meta_block(self, block: Block, address: str, meta: str) -> None:
        where = f"{address}.{block.type}"
        if block.type == "lifecycle":
            self.report.checked["nested block"] += 1
            self._body(block, _LIFECYCLE[meta], where, meta=None)
        elif block.type == "provisioner":
            self.skip(block.line, where, "provisioner contents depend on the provisioner")
        else:
            self.skip(block.line, where, "connection contents are not checked")


_DYNAMIC = BlockSchema(
    attributes=frozenset({"for_each", "iterator", "labels"}),
    blocks={},
    required=frozenset({"for_each", "content"}),
    open_blocks=frozenset({"content"}),
)


def check(
    terraform_dir: Path, cache: Path = DEFAULT_CACHE, schemas: Schemas | None = None
) -> Report:
    """Hold every module under *terraform_dir* (itself and ``modules/*``) to the schemas."""
    terraform_dir = terraform_dir.resolve()
    report = Report()
    checker = _Checker(terraform_dir, schemas or Schemas(cache), report)
    for folder in _module_folders(terraform_dir):
        checker.module(read_module(folder))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="warden_local.tfschema", description=__doc__.splitlines()[0]
    )
    parser.add_argument("terraform_dir", nargs="?", type=Path, default=ROOT / "terraform")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--fetch-only", action="store_true", help="fetch and extract the schema packages, then stop"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.fetch_only:
            for package in PACKAGES.values():
                folder = package_dir(package, args.cache_dir)
                print(f"{package.spec} ({package.source} {package.provider_version}): {folder}")
            print(f"tfschema: schema packages ready in {time.monotonic() - started:.1f} s")
            return 0
        report = check(args.terraform_dir, args.cache_dir)
    except SchemaError as exc:
        print(f"tfschema: {exc}", file=sys.stderr)
        return 2
    for finding in sorted(report.findings, key=lambda f: (str(f.file), f.line)):
        print(finding)
    for unchecked in report.unchecked:
        print(unchecked)
    print(f"{report.summary()} ({time.monotonic() - started:.1f} s)")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
