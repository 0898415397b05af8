"""terraform/ held to the google and random providers' real schemas, offline (tfschema).

The schemas come from the cdktf prebuilt bindings on npm (fetched once per clone into .cache/, by
``make tfschema-cache``). Each negative test breaks a copy of terraform/ in one known way and
expects exactly that finding, at its file, line and block address.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from warden_local import tfschema
from warden_local.tfschema import PACKAGES, Finding, Report, SchemaError, Schemas, check

ROOT = Path(__file__).resolve().parents[1]
TF = ROOT / "terraform"
HCL = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
GOOGLE = PACKAGES["hashicorp/google"]
RANDOM = PACKAGES["hashicorp/random"]


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    """Both schema packages, fetched (or found in .cache/tfschema) once per test process."""
    found = Schemas()
    try:
        for source in PACKAGES:
            found.package(source)
    except SchemaError as exc:
        pytest.fail(str(exc))
    return found


@pytest.fixture
def tf(tmp_path: Path) -> Path:
    """A copy of terraform/ to break."""
    copy = tmp_path / "terraform"
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    return copy


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the one occurrence of *old*; return the line it starts on."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: expected exactly one {old!r}"
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def _line_of(path: Path, start: str) -> int:
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(start)]
    assert len(lines) == 1, f"{path.name}: expected one line starting with {start!r}"
    return lines[0]


def _found(report: Report) -> set[tuple[str, int, str]]:
    return {(str(f.file), f.line, f.address) for f in report.findings}


def _only(report: Report, file: str, line: int, address: str, *words: str) -> Finding:
    assert len(report.findings) == 1, "\n".join(map(str, report.findings))
    finding = report.findings[0]
    assert (str(finding.file), finding.line, finding.address) == (file, line, address)
    for word in words:
        assert word in finding.problem, finding
    return finding


# --- the real configuration ---------------------------------------------------------------------


def _hcl2_addresses() -> list[str]:
    """Every block the check should hold to a schema, read independently with hcl2.load."""
    found = []
    for path in TF.rglob("*.tf"):
        with path.open() as fh:
            parsed = hcl2.load(fh, serialization_options=HCL)
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    prefix = "data." if kind == "data" else ""
                    found += [f"{prefix}{rtype}.{name}" for name in named]
        found += [f"provider.{name}" for block in parsed.get("provider", []) for name in block]
        found += [f"module.{name}" for block in parsed.get("module", []) for name in block]
    return sorted(found)


def test_terraform_holds_to_the_provider_schemas(schemas: Schemas) -> None:
    report = check(TF, schemas=schemas)
    assert not report.findings, "\n".join(map(str, report.findings))
    assert not report.unchecked, "\n".join(map(str, report.unchecked))
    # Nothing was walked past: every resource, data source, provider and module call is checked.
    assert sorted(report.addresses) == _hcl2_addresses()
    assert report.checked["resource"] >= 30
    assert report.checked["nested block"] >= 50
    dynamic = sum(p.read_text().count('  dynamic "') for p in TF.rglob("*.tf"))
    assert report.checked["dynamic block"] == dynamic >= 3
    assert report.providers == {"hashicorp/google 6.50.0", "hashicorp/random 3.7.2"}


def test_providers_are_pinned_to_the_schema_versions(schemas: Schemas) -> None:
    for package in (GOOGLE, RANDOM):
        meta = json.loads((schemas.package(package.source) / "package.json").read_text())
        assert meta["version"] == package.version
        assert meta["cdktf"]["provider"] == {
            "name": f"registry.terraform.io/{package.source}",
            "version": package.provider_version,
        }
    assert (GOOGLE.provider_version, RANDOM.provider_version) == ("6.50.0", "3.7.2")
    for versions in [TF / "versions.tf", TF / "modules" / "function" / "versions.tf"]:
        assert 'version = "= 6.50.0"' in versions.read_text(), versions


def test_a_looser_provider_constraint_is_reported(schemas: Schemas, tf: Path) -> None:
    _edit(tf / "versions.tf", '"= 6.50.0"', '">= 6.0, < 8.0"')
    _only(
        check(tf, schemas=schemas),
        "terraform/versions.tf",
        _line_of(tf / "versions.tf", "    google = {"),
        "terraform.required_providers.google",
        "= 6.50.0",
    )


def test_schemas_read_required_arguments_and_nesting(schemas: Schemas) -> None:
    bucket = schemas.resource("google_storage_bucket")
    assert bucket is not None
    assert bucket.required == {"name", "location"}
    assert {"uniform_bucket_level_access", "labels", "force_destroy"} <= bucket.attributes
    assert "lifecycle_rule" not in bucket.single  # repeatable
    assert {"versioning", "timeouts"} <= bucket.single
    rule = bucket.blocks["lifecycle_rule"]
    assert rule.required == {"action", "condition"}
    assert {"with_state", "age", "days_since_noncurrent_time"} <= rule.blocks[
        "condition"
    ].attributes
    assert rule.blocks["action"].required == {"type"}
    secret = schemas.resource("google_secret_manager_secret")
    assert secret is not None
    assert secret.required == {"secret_id", "replication"}
    function = schemas.resource("google_cloudfunctions2_function")
    assert function is not None
    env = function.blocks["service_config"].blocks["secret_environment_variables"]
    assert env.required == {"key", "project_id", "secret", "version"}
    data = schemas.data_source("google_secret_manager_secret")
    assert data is not None
    assert data.required == {"secret_id"}
    password = schemas.resource("random_password", "hashicorp/random")
    assert password is not None
    assert password.required == {"length"}
    assert schemas.resource("google_storage_buckt") is None


# --- what a broken copy reports -----------------------------------------------------------------


def test_misspelled_arguments_are_reported_at_their_address(schemas: Schemas, tf: Path) -> None:
    storage = tf / "storage.tf"
    nested = _edit(
        storage, "      with_state                 =", "      with_stat                  ="
    )
    top = _edit(storage, "  uniform_bucket_level_access =", "  uniform_bucket_levl_access  =")
    report = check(tf, schemas=schemas)
    assert _found(report) == {
        (
            "terraform/storage.tf",
            nested,
            "google_storage_bucket.bucket.lifecycle_rule[0].condition",
        ),
        ("terraform/storage.tf", top, "google_storage_bucket.bucket"),
    }
    problems = sorted(f.problem for f in report.findings)
    assert problems == [
        "unknown argument 'uniform_bucket_levl_access' (did you mean "
        "'uniform_bucket_level_access'?)",
        "unknown argument 'with_stat' (did you mean 'with_state'?)",
    ]


def test_blocks_and_meta_arguments_are_checked_too(schemas: Schemas, tf: Path) -> None:
    storage = tf / "storage.tf"
    versioning = _edit(storage, "  versioning {\n", "  versionning {\n")
    depends = _edit(
        storage, "  depends_on = [google_project_service", "  depend_on = [google_project_service"
    )
    monitoring = tf / "monitoring.tf"
    precondition = _line_of(monitoring, "      error_message = ")
    _edit(monitoring, "      error_message = ", "      error_mesage = ")
    report = check(tf, schemas=schemas)
    by_line = {(str(f.file), f.line): f.problem for f in report.findings}
    assert len(report.findings) == 4, "\n".join(map(str, report.findings))
    assert (
        "unknown block type 'versionning' (did you mean 'versioning'?)"
        in by_line[("terraform/storage.tf", versioning)]
    )
    assert "did you mean 'depends_on'?" in by_line[("terraform/storage.tf", depends)]
    assert "did you mean 'error_message'?" in by_line[("terraform/monitoring.tf", precondition)]
    # ... and the precondition now lacks its required error_message.
    missing = [f for f in report.findings if "missing required" in f.problem]
    assert [f.address for f in missing] == [
        "google_monitoring_alert_policy.config.lifecycle.precondition[0]"
    ]


def test_unknown_types_are_reported_and_other_providers_listed(schemas: Schemas, tf: Path) -> None:
    (tf / "extra.tf").write_text(
        'resource "google_storage_buckt" "typo" {\n  name = "x"\n}\n'
        'data "google_projct" "typo" {}\n'
        'resource "random_pasword" "typo" {}\n'
        'resource "null_resource" "other" {}\n'
    )
    report = check(tf, schemas=schemas)
    assert _found(report) == {
        ("terraform/extra.tf", 1, "google_storage_buckt.typo"),
        ("terraform/extra.tf", 4, "data.google_projct.typo"),
        ("terraform/extra.tf", 5, "random_pasword.typo"),
    }
    problems = {f.address: f.problem for f in report.findings}
    assert problems["google_storage_buckt.typo"].startswith(
        "unknown resource type 'google_storage_buckt' in hashicorp/google 6.50.0 "
        "(did you mean 'google_storage_bucket'"
    )
    assert "did you mean 'google_project'" in problems["data.google_projct.typo"]
    assert "did you mean 'random_password'" in problems["random_pasword.typo"]
    # A provider without a schema package here is listed, not skipped silently.
    assert [(u.address, u.line) for u in report.unchecked] == [("null_resource.other", 6)]


def test_missing_required_arguments_and_blocks_are_reported(schemas: Schemas, tf: Path) -> None:
    bucket = _line_of(tf / "storage.tf", 'resource "google_storage_bucket" "bucket"')
    _edit(tf / "storage.tf", "  location                    = var.buckets.location\n", "")
    action = _line_of(tf / "storage.tf", "    action {")
    _edit(tf / "storage.tf", '    action {\n      type = "Delete"\n    }', "    action {\n    }")
    secret = _line_of(tf / "secrets.tf", 'resource "google_secret_manager_secret" "webhook_token"')
    _edit(tf / "secrets.tf", "  replication {\n    auto {}\n  }\n", "")
    report = check(tf, schemas=schemas)
    assert {(str(f.file), f.line, f.address, f.problem) for f in report.findings} == {
        (
            "terraform/storage.tf",
            bucket,
            "google_storage_bucket.bucket",
            "missing required argument 'location'",
        ),
        (
            "terraform/storage.tf",
            action,
            "google_storage_bucket.bucket.lifecycle_rule[0].action",
            "missing required argument 'type'",
        ),
        (
            "terraform/secrets.tf",
            secret,
            "google_secret_manager_secret.webhook_token",
            "missing required block 'replication'",
        ),
    }


def test_dynamic_block_content_is_checked(schemas: Schemas, tf: Path) -> None:
    labels = _edit(
        tf / "monitoring.tf", '      value_type = "STRING"', '      value_typ  = "STRING"'
    )
    module = tf / "modules" / "function" / "main.tf"
    content = _line_of(module, "      content {")
    version = _edit(module, '        version    = "latest"', '        versoin    = "latest"')
    target = _edit(
        tf / "storage.tf", '  dynamic "lifecycle_rule" {', '  dynamic "lifecycle_rules" {'
    )
    report = check(tf, schemas=schemas)
    secret_env = (
        "google_cloudfunctions2_function.function.service_config"
        ".dynamic.secret_environment_variables.content"
    )
    assert {(str(f.file), f.line, f.address, f.problem) for f in report.findings} == {
        (
            "terraform/monitoring.tf",
            labels,
            "google_monitoring_metric_descriptor.warden.dynamic.labels.content",
            "unknown argument 'value_typ' (did you mean 'value_type'?)",
        ),
        (
            "terraform/modules/function/main.tf",
            version,
            secret_env,
            "unknown argument 'versoin' (did you mean 'version'?)",
        ),
        (
            "terraform/modules/function/main.tf",
            content,
            secret_env,
            "missing required argument 'version'",
        ),
        (
            "terraform/storage.tf",
            target,
            "google_storage_bucket.bucket.dynamic.lifecycle_rules",
            "unknown block type 'lifecycle_rules' (did you mean 'lifecycle_rule'?)",
        ),
    }


def test_the_cli_exits_non_zero_on_findings(
    schemas: Schemas, tf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tfschema.main([str(TF), "--cache-dir", str(schemas.cache)]) == 0
    assert "0 finding(s)" in capsys.readouterr().out
    _edit(
        tf / "pubsub.tf",
        'resource "google_pubsub_topic" "topic" {',
        'resource "google_pubsub_topc" "topic" {',
    )
    assert tfschema.main([str(tf), "--cache-dir", str(schemas.cache)]) == 1
    out = capsys.readouterr().out
    assert "terraform/pubsub.tf:" in out
    assert "google_pubsub_topc.topic: unknown resource type" in out
    assert "1 finding(s)" in out.splitlines()[-1]


# --- fetching -----------------------------------------------------------------------------------


def _tarball(path: Path, members: dict[str, bytes | None]) -> Path:
    """A .tgz whose members are files (bytes) or, for None, a symlink to /etc/passwd."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "members",
    [
        {"package/lib/../../escaped.js": b"x"},
        {"/package/lib/x/index.js": b"x"},
        {"package/lib/x/index.js": None},
    ],
    ids=["dot-dot", "absolute", "symlink"],
)
def test_extraction_refuses_members_leaving_the_folder(
    tmp_path: Path, members: dict[str, bytes | None]
) -> None:
    tarball = _tarball(tmp_path / "evil.tgz", members)
    with pytest.raises(SchemaError, match=r"refusing|not a regular file"):
        tfschema._extract(tarball, tmp_path / "out" / "package", RANDOM)
    assert not (tmp_path / "escaped.js").exists()
    assert not (tmp_path / "out" / "escaped.js").exists()


def test_concurrent_fetches_end_with_one_complete_folder(tmp_path: Path) -> None:
    """Two fetches racing into an empty cache (as two xdist workers would) both succeed."""
    cache = tmp_path / "cache"
    results: list[Path | BaseException] = []

    def fetch() -> None:
        try:
            results.append(tfschema.package_dir(RANDOM, cache))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert results == [cache / RANDOM.folder] * 2
    assert sorted(p.name for p in cache.iterdir()) == [RANDOM.folder]  # no temporary left
    manifest = json.loads((cache / RANDOM.folder / tfschema.MANIFEST).read_text())
    assert manifest["types"]["resource"]["random_password"] == "password"
    assert manifest["types"]["resource"]["random_string"] == "string-resource"
    assert not list((cache / RANDOM.folder).rglob("*.jsii"))  # only what the check reads
