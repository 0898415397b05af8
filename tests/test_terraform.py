"""Offline checks of terraform/: what can be proven without a Google provider.

No provider can be downloaded here, so ``terraform validate``/``plan`` cannot run. Instead:
``terraform fmt -check``; checkov ``--skip-download`` (its own virtualenv, ``make checkov``) with
zero failed checks and every skip justified; a real ``terraform apply`` of the provider-free
``modules/config`` (the yamldecode of warden.yaml) compared with what the Python code derives
from the same file; and python-hcl2 reads of the root module that hold Terraform, warden.yaml
and the code together (functions, environment, scheduler payloads, metrics, alert policies,
per-function roles).
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import hcl2
import pytest
import yaml
from croniter import croniter
from hcl2 import SerializationOptions

from warden import settings
from warden.alerts.router import TOKEN_ENV
from warden.config import WardenConfig, load_config
from warden.config.alerting import parse_alerting
from warden.config.schedules import EVENTS_TOPIC, TOPICS, job_specs
from warden.jobs.messages import decode_json_payload, decode_pubsub_event, parse_run_request
from warden.telemetry.metrics import CATALOGUE
from warden_local.bundle import REQUIREMENT_SETS
from warden_local.policies import BASIC_AUTH_USER
from warden_local.pubsub import (
    DELIVERY_FILE,
    dead_letter_topic_id,
    delivery_policy,
    hold_subscription_id,
    push_subscription_id,
)
from warden_local.stack import FUNCTIONS, RUN_JOB_MAX_RETRIES, RUN_JOB_TIMEOUT, RUN_JOBS

ROOT = Path(__file__).resolve().parents[1]
TF = ROOT / "terraform"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
HCL = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


# --- reading HCL --------------------------------------------------------------------------------


def _unwrap(value: Any) -> Any:
    """python-hcl2 gives every nested block as a list; a single block reads better as a dict."""
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_unwrap(v) for v in value]
        return items[0] if len(items) == 1 and isinstance(items[0], dict) else items
    return value


@functools.cache
def _parse(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        parsed = hcl2.load(fh, serialization_options=HCL)
    # Top-level block lists stay lists (merged below); what is inside them is unwrapped.
    return {kind: [_unwrap(b) for b in blocks] for kind, blocks in parsed.items()}


@functools.cache
def _module(directory: Path) -> dict[str, Any]:
    """All .tf files of one module merged: blocks by type, then by label(s)."""
    merged: dict[str, Any] = {
        "locals": {},
        "resource": {},
        "data": {},
        "variable": {},
        "output": {},
        "module": {},
    }
    for path in sorted(directory.glob("*.tf")):
        for kind, blocks in _parse(path).items():
            if kind == "locals":
                for block in blocks:
                    merged["locals"].update(block)
            elif kind in {"resource", "data"}:
                for block in blocks:
                    for rtype, named in block.items():
                        merged[kind].setdefault(rtype, {}).update(named)
            elif kind in {"variable", "output", "module"}:
                for block in blocks:
                    merged[kind].update(block)
    return merged


def _root() -> dict[str, Any]:
    return _module(TF)


def _resources(rtype: str) -> dict[str, Any]:
    return _root()["resource"].get(rtype, {})


# --- evaluating modules/config with a real terraform ----------------------------------------------


def _terraform() -> str:
    exe = shutil.which("terraform")
    if exe is None:
        pytest.fail("terraform >= 1.6 must be on PATH (no provider is needed for these checks)")
    return exe


def _tf_env(tmp: Path) -> dict[str, str]:
    rc = tmp / "terraformrc"
    rc.write_text("")
    return {"TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1", "PATH": "/usr/bin:/bin"}


def _output(exe: str, workdir: Path, env: dict[str, str], name: str) -> Any:
    """``terraform output -json NAME`` of an applied working directory."""
    out = subprocess.run(
        [exe, "output", "-json", name],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def _evaluate_config(yaml_text: str, workdir: Path) -> dict[str, Any]:
    """Apply modules/config (no provider, no resource) to YAML and return its outputs."""
    exe = _terraform()
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TF / "modules" / "config", workdir / "config")
    (workdir / "warden.yaml").write_text(yaml_text)
    (workdir / "main.tf").write_text(
        'module "config" {\n'
        '  source      = "./config"\n'
        '  config_yaml = file("${path.module}/warden.yaml")\n'
        "}\n"
        'output "config" {\n'
        "  value = module.config\n"
        "}\n"
    )
    env = _tf_env(workdir)
    for args in (["init", "-input=false", "-no-color"], ["apply", "-auto-approve", "-no-color"]):
        done = subprocess.run(
            [exe, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"terraform {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return _output(exe, workdir, env, "config")


@pytest.fixture(scope="module")
def tf_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _evaluate_config(
        (ROOT / "warden.yaml").read_text(), tmp_path_factory.mktemp("tf-config")
    )


@pytest.fixture(scope="module")
def config() -> WardenConfig:
    return load_config(ROOT / "warden.yaml")


def _variant_yaml() -> str:
    """warden.yaml with a housekeeping schedule, a schedule without a time zone, no alerting, and
    a policy relying on every default: the derivation must agree beyond the shipped file."""
    raw = yaml.safe_load((ROOT / "warden.yaml").read_text())
    first, second = sorted(raw["models"])
    raw["models"][first]["schedules"]["housekeeping"] = {
        "cron": "15 4 * * *",
        "timezone": "Asia/Tokyo",
    }
    raw["models"][second]["schedules"]["monitor"] = {"cron": "*/30 * * * *"}
    raw.pop("alerting")
    raw["alert_policies"].append(
        {"name": "all-defaults", "metric": "drift/dataset", "threshold": 1}
    )
    raw["alert_policies"].append(
        {
            "name": "low-auc",
            "metric": "monitor/performance",
            "comparison": "<=",
            "threshold": 0.8,
            "filter": {"metric": "roc_auc"},
            "duration_s": 600,
            "severity": "critical",
        }
    )
    return yaml.safe_dump(raw, sort_keys=False)


# --- formatting and static analysis ---------------------------------------------------------------


def test_terraform_files_are_formatted(tmp_path: Path) -> None:
    done = subprocess.run(
        [_terraform(), "fmt", "-check", "-recursive", "-diff", "-no-color"],
        cwd=TF,
        env=_tf_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"terraform fmt -check found changes:\n{done.stdout}"


def _checkov(directory: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make checkov` (make test does)")
    done = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode in {0, 1}, done.stderr[-2000:]
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


# checkov does not expand the root's for_each over the function module, so the module is also
# scanned on its own (with its variables' defaults).
@pytest.mark.parametrize("directory", ["", "modules/function"], ids=["root", "function-module"])
def test_checkov_reports_no_failed_check(directory: str) -> None:
    report = _checkov(TF / directory)
    failed = report.get("results", {}).get("failed_checks", [])
    summary = report["summary"]
    assert not failed, "\n".join(
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})" for c in failed
    )
    assert summary["parsing_errors"] == 0
    assert summary["passed"] + summary["skipped"] > 0, "checkov scanned nothing"


def test_every_checkov_skip_is_justified_at_its_resource() -> None:
    skips = []
    for path in TF.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.search(r"checkov:skip=(CKV2?_[A-Z]+_\d+):(.+)", line)
                assert match, f"{path.name}: skip without a reason: {line.strip()}"
                skips.append((path.name, match.group(1), match.group(2).strip()))
    assert skips, "expected the justified skips (CMEK on topics, bucket usage logs, ingress)"
    for name, check, reason in skips:
        assert len(reason.split()) >= 8, f"{name}: {check} needs a real justification"


# --- module shape -------------------------------------------------------------------------------


def test_root_module_files_are_by_concern() -> None:
    concerns = [
        "versions",
        "providers",
        "backend",
        "variables",
        "outputs",
        "services",
        "storage",
        "pubsub",
        "scheduler",
        "functions",
        "jobs",
        "iam",
        "monitoring",
    ]
    missing = [c for c in concerns if not (TF / f"{c}.tf").exists()]
    assert not missing
    assert (TF / "modules" / "function" / "main.tf").exists()
    assert _root()["module"]["function"]["source"] == "./modules/function"


@pytest.mark.parametrize("directory", ["", "modules/function", "modules/config"])
def test_every_variable_is_typed_and_described(directory: str) -> None:
    variables = _module(TF / directory if directory else TF)["variable"]
    assert variables
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(str(body.get("description", ""))) > 10, f"variable {name} has no description"


def test_free_form_root_variables_are_validated() -> None:
    variables = _root()["variable"]
    for name in [
        "project_id",
        "region",
        "prefix",
        "data_bucket",
        "buckets",
        "functions",
        "pubsub",
        "job_image",
        "jobs",
    ]:
        assert variables[name].get("validation"), f"variable {name} has no validation block"


def test_tfvars_example_sets_only_declared_variables() -> None:
    example = _parse(TF / "terraform.tfvars.example")
    assert set(example) <= set(_root()["variable"])
    assert {"project_id", "region", "prefix"} <= set(example)


def test_names_come_from_the_prefix_not_random_suffixes() -> None:
    assert "random_id" not in _root()["resource"]
    assert "random_string" not in _root()["resource"]
    # The only random value is the webhook token, which is a secret, not a name.
    assert set(_resources("random_password")) == {"webhook_token"}
    named = {
        "google_storage_bucket": "name",
        "google_pubsub_topic": "name",
        "google_pubsub_subscription": "name",
        "google_cloud_scheduler_job": "name",
        "google_service_account": "account_id",
        "google_secret_manager_secret": "secret_id",
        "google_artifact_registry_repository": "repository_id",
    }
    for rtype, attr in named.items():
        for label, body in _resources(rtype).items():
            assert str(body[attr]).startswith("${var.prefix}-"), f"{rtype}.{label}.{attr}"


def test_buckets_are_locked_down_versioned_and_expire_old_objects() -> None:
    bucket = _resources("google_storage_bucket")["bucket"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"]["enabled"] is True
    rule = bucket["lifecycle_rule"]
    assert rule["condition"]["with_state"] == "ARCHIVED"
    assert "noncurrent_retention_days" in rule["condition"]["days_since_noncurrent_time"]
    buckets = _root()["locals"]["buckets"]
    for role in ["registry", "backup", "bundles"]:
        assert role in buckets
    assert "bundle_retention_days" in buckets
    # Snapshots age out in housekeeping (keeping the newest per model), never by a bucket rule.
    storage_tf = (TF / "storage.tf").read_text()
    assert re.search(r"backup\s*=\s*\{\s*retention_days\s*=\s*null\s*\}", storage_tf)


# --- functions ----------------------------------------------------------------------------------


def _decorated_entry_points() -> set[tuple[str, str, str]]:
    """(entry point, folder, signature) of every functions_framework-decorated function."""
    found = set()
    for main in sorted((ROOT / "functions").glob("*/main.py")):
        for node in ast.parse(main.read_text()).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Attribute) and deco.attr in {"http", "cloud_event"}:
                    signature = "http" if deco.attr == "http" else "cloudevent"
                    found.add((node.name, main.parent.name, signature))
    return found


def test_every_entry_point_has_a_function_with_its_trigger() -> None:
    code = _decorated_entry_points()
    assert len(code) == 6
    defaults = _root()["locals"]["function_defaults"]
    terraform = {
        (name, f["source"], "http" if f["trigger"] is None else "cloudevent")
        for name, f in defaults.items()
    }
    assert terraform == code
    local = {(f.name, f.folder, f.signature) for f in FUNCTIONS}
    assert local == code
    # Event functions are triggered by the same topic in the cloud and in the local stack.
    topics = _root()["locals"]["topics"]
    for spec in FUNCTIONS:
        trigger = defaults[spec.name]["trigger"]
        assert (topics[trigger] if trigger else None) == spec.topic, spec.name


def test_function_module_deploys_each_bundle_under_its_content_hash() -> None:
    call = _root()["module"]["function"]
    assert call["for_each"] == "${local.functions}"
    assert call["entry_point"] == "${each.key}"
    assert call["bundle"]["path"].endswith("/${each.value.source}.zip")
    assert call["service_account_email"] == "${google_service_account.function[each.key].email}"
    module = _module(TF / "modules" / "function")
    assert module["locals"]["bundle_hash"] == "${filesha256(var.bundle.path)}"
    obj = module["resource"]["google_storage_bucket_object"]["bundle"]
    assert "local.bundle_hash" in obj["name"]
    # Every function folder is a bundle the build script knows, and nothing else is.
    folders = {p.name for p in (ROOT / "functions").iterdir() if (p / "main.py").exists()}
    assert set(REQUIREMENT_SETS) == folders
    assert {f["source"] for f in _root()["locals"]["function_defaults"].values()} == folders


ROUTERS = {"route_alerts", "route_alert_events"}


def _deployed_sizing(workdir: Path, functions: str | None = None) -> dict[str, Any]:
    """Each function's concurrency, cpu and THREADS as Terraform computes them (no provider):
    functions.tf's sizing locals and the module call's own environment expression, applied
    with variables.tf and the example tfvars (and ``-var=functions=FUNCTIONS``)."""
    exe = _terraform()
    text = (TF / "functions.tf").read_text()
    sizing = re.search(
        r"^  function_defaults = \{.*?^  \}\n\n  functions = \{.*?^  \}$", text, re.M | re.S
    )
    assert sizing, "functions.tf: no function_defaults/functions locals"
    environment = _root()["module"]["function"]["environment"]
    assert environment.startswith("${")
    assert environment.endswith("}")
    environment = re.sub(r"\beach\.value\b", "f", environment[2:-1])
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("variables.tf", "terraform.tfvars.example"):
        shutil.copy(TF / name, workdir / name)
    (workdir / "main.tf").write_text(
        f'locals {{\n{sizing.group(0)}\n  environment = {{ WARDEN_PROJECT = "p" }}\n}}\n'
        'output "sizing" {\n  value = { for k, f in local.functions : k => {\n'
        "    concurrency = f.service.concurrency\n    cpu = f.service.cpu\n"
        f'    threads = lookup({environment}, "THREADS", null)\n  }} }}\n}}\n'
    )
    env = _tf_env(workdir)
    args = ["apply", "-auto-approve", "-no-color", "-var-file=terraform.tfvars.example"]
    if functions is not None:
        args.append(f"-var=functions={functions}")
    for step in (["init", "-input=false", "-no-color"], args):
        done = subprocess.run(
            [exe, *step], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"terraform {step[0]}:\n{done.stdout}\n{done.stderr}"
    return _output(exe, workdir, env, "sizing")


def test_the_router_serves_requests_concurrently_and_threads_follow_concurrency(
    tmp_path: Path,
) -> None:
    """The router waits on Cloud Storage, so it takes many requests per instance; a model run
    takes a whole instance. gunicorn's THREADS equals the concurrency, deployed and local
    (docs/decisions.md, "Router concurrency")."""
    sizing = _deployed_sizing(tmp_path / "default")
    for name, s in sizing.items():
        assert s["threads"] == str(s["concurrency"]), name
        if name in ROUTERS:
            assert s["concurrency"] > 1, name
            assert float(s["cpu"]) >= 1, name  # Cloud Run: concurrency > 1 needs a whole vCPU
        else:
            assert s["concurrency"] == 1, name
    assert set(sizing) == ROUTERS | {"retrain_model", "monitor_model", "housekeeping", "health"}
    # var.functions overrides it per function, and THREADS follows.
    override = _deployed_sizing(tmp_path / "override", "{route_alerts = {concurrency = 32}}")
    assert override["route_alerts"] == {
        **sizing["route_alerts"],
        "concurrency": 32,
        "threads": "32",
    }
    # The module deploys both: concurrency and the environment it is given.
    service = _module(TF / "modules" / "function")["resource"]["google_cloudfunctions2_function"][
        "function"
    ]["service_config"]
    assert service["max_instance_request_concurrency"] == "${var.service.concurrency}"
    assert service["environment_variables"].startswith("${merge(var.environment, ")
    assert _root()["module"]["function"]["service"] == "${each.value.service}"
    # The local stack runs the router's servers with the same threads.
    local = {spec.name: spec.threads for spec in FUNCTIONS if spec.threads is not None}
    assert local == {name: sizing[name]["concurrency"] for name in ROUTERS}


def test_event_functions_have_explicit_retry_and_a_dead_letter_topic() -> None:
    sub = _module(TF / "modules" / "function")["resource"]["google_pubsub_subscription"]["trigger"]
    assert sub["retry_policy"] == {
        "minimum_backoff": "${var.pubsub_trigger.minimum_backoff}",
        "maximum_backoff": "${var.pubsub_trigger.maximum_backoff}",
    }
    assert sub["dead_letter_policy"]["max_delivery_attempts"] == (
        "${var.pubsub_trigger.max_delivery_attempts}"
    )
    assert "dead_letter_topic" in sub["dead_letter_policy"]
    assert "oidc_token" in sub["push_config"]
    call = _root()["module"]["function"]["pubsub_trigger"]
    assert "google_pubsub_topic.dead_letter[each.value.trigger]" in call
    # The delivery policy the module gets is the resolved one: delivery.json, then var.pubsub.
    for field in ("max_delivery_attempts", "minimum_backoff", "maximum_backoff"):
        assert f"{field} = local.delivery.{field}" in call
        assert _root()["locals"]["delivery"][field] == (
            f"${{coalesce(var.pubsub.{field}, local.delivery_defaults.{field})}}"
        )
    assert _root()["locals"]["delivery_defaults"] == (
        '${jsondecode(file("${path.module}/delivery.json"))}'
    )
    topics = _root()["locals"]["topics"]
    assert topics == {**TOPICS, "events": EVENTS_TOPIC}
    assert _resources("google_pubsub_subscription")["dead_letter"]["for_each"] == (
        "${local.dead_letter_topics}"
    )


def _delivery(workdir: Path, pubsub: str | None) -> tuple[int, Any]:
    """Apply variables.tf + delivery.json + pubsub.tf's delivery locals with a real terraform
    (no provider): (exit code, ``local.delivery`` or the error text)."""
    exe = _terraform()
    if not (workdir / "main.tf").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        for name in ("variables.tf", "delivery.json", "terraform.tfvars.example"):
            shutil.copy(TF / name, workdir / name)
        block = re.search(
            r"^  delivery_defaults = .*?^  delivery = \{.*?^  \}$",
            (TF / "pubsub.tf").read_text(),
            re.MULTILINE | re.DOTALL,
        )
        assert block, "pubsub.tf: no delivery locals"
        output = 'output "delivery" {\n  value = local.delivery\n}\n'
        (workdir / "main.tf").write_text(f"locals {{\n{block.group(0)}\n}}\n\n{output}")
        init = subprocess.run(
            [exe, "init", "-input=false", "-no-color"],
            cwd=workdir,
            env=_tf_env(workdir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert init.returncode == 0, init.stdout + init.stderr
    args = [exe, "apply", "-auto-approve", "-no-color", "-var-file=terraform.tfvars.example"]
    if pubsub is not None:
        args.append(f"-var=pubsub={pubsub}")
    env = _tf_env(workdir)
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return done.returncode, done.stdout + done.stderr
    return 0, _output(exe, workdir, env, "delivery")


def test_delivery_json_is_the_default_policy_and_var_pubsub_overrides_it_per_field(
    tmp_path: Path,
) -> None:
    defaults = json.loads((TF / "delivery.json").read_text())
    assert defaults == {
        "max_delivery_attempts": 5,
        "minimum_backoff": "10s",
        "maximum_backoff": "600s",
    }
    assert _delivery(tmp_path, None) == (0, defaults)
    assert _delivery(tmp_path, "{max_delivery_attempts = 7}") == (
        0,
        {**defaults, "max_delivery_attempts": 7},
    )
    assert _delivery(tmp_path, '{minimum_backoff = "5s", maximum_backoff = "60s"}') == (
        0,
        {**defaults, "minimum_backoff": "5s", "maximum_backoff": "60s"},
    )
    code, error = _delivery(tmp_path, "{max_delivery_attempts = 4}")
    assert code != 0
    assert "max_delivery_attempts must be between 5 and 100" in error
    code, error = _delivery(tmp_path, '{maximum_backoff = "ten minutes"}')
    assert code != 0
    assert "must be durations in seconds" in error


def test_the_local_stack_reads_the_same_delivery_json() -> None:
    assert DELIVERY_FILE == TF / "delivery.json"
    policy = delivery_policy()
    assert {
        "max_delivery_attempts": policy.max_delivery_attempts,
        "minimum_backoff": policy.minimum_backoff,
        "maximum_backoff": policy.maximum_backoff,
    } == json.loads(DELIVERY_FILE.read_text())


def test_the_local_stack_names_triggers_as_terraform_does() -> None:
    module = _module(TF / "modules" / "function")
    assert module["locals"]["full_name"] == "${var.prefix}-${var.name}"
    trigger = module["resource"]["google_pubsub_subscription"]["trigger"]
    assert trigger["name"] == "${local.full_name}-push"
    assert 'name = replace(key, "_", "-")' in (TF / "functions.tf").read_text()
    assert push_subscription_id("route_alert_events", "acme") == "acme-route-alert-events-push"
    # Dead-letter topics and hold subscriptions: "<topic>-dead-letter", then "-hold".
    assert _root()["locals"]["dead_letter_topics"] == (
        '${{for k, v in local.topics : k => "${v}-dead-letter"}}'
    )
    hold = _resources("google_pubsub_subscription")["dead_letter"]
    assert hold["name"] == "${var.prefix}-${each.value}-hold"
    assert hold["retain_acked_messages"] is True
    assert dead_letter_topic_id("retrain-requests") == "retrain-requests-dead-letter"
    assert hold_subscription_id("retrain-requests") == "retrain-requests-dead-letter-hold"


def test_only_the_delivery_locals_read_var_pubsub() -> None:
    """var.pubsub's fields are null unless overridden; everything else reads local.delivery."""
    readers = {
        path.name for path in TF.glob("*.tf") if re.search(r"\bvar\.pubsub\.", path.read_text())
    }
    assert readers == {"pubsub.tf", "variables.tf"}


# --- environment ----------------------------------------------------------------------------------


def test_terraform_sets_exactly_the_variables_the_code_reads() -> None:
    environment = set(_root()["locals"]["environment"])
    module_main = _module(TF / "modules" / "function")["resource"][
        "google_cloudfunctions2_function"
    ]
    env_expr = module_main["function"]["service_config"]["environment_variables"]
    assert "WARDEN_CODE_VERSION" in env_expr  # set by the module from the bundle hash
    secrets = _root()["locals"]["function_secrets"]["route_alerts"]
    secret_names = {k for k in re.findall(r"\b(WARDEN_[A-Z_]+)\s*=", str(secrets))}
    deployed = environment | {"WARDEN_CODE_VERSION"} | secret_names
    assert deployed == set(settings.ENV_VARS) - settings.LOCAL_ONLY_ENV_VARS
    assert secret_names >= settings.SECRET_ENV_VARS
    assert not settings.SECRET_ENV_VARS & environment, "a secret must not be a plain variable"


def test_env_vars_table_is_what_settings_reads() -> None:
    source = (ROOT / "shared" / "warden" / "settings.py").read_text()
    read = set(re.findall(r'env\.get\("(WARDEN_[A-Z_]+)"', source)) | {TOKEN_ENV}
    assert read == set(settings.ENV_VARS) | set(settings.JOB_ENV_VARS)


def test_only_settings_reads_the_environment() -> None:
    offenders = []
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders


def test_receiver_secrets_are_the_env_names_in_the_alerting_config(
    tf_config: dict[str, Any], config: WardenConfig
) -> None:
    alerting = parse_alerting(config.alerting, "warden.yaml")
    names = set()
    for receiver in alerting.receivers:
        spec = getattr(receiver, receiver.kind)
        names |= {getattr(spec, f) for f in ("url_env", "secret_env") if hasattr(spec, f)}
    assert set(tf_config["receiver_secret_envs"]) == names
    assert tf_config["receiver_topics"] == []


# --- scheduler jobs -------------------------------------------------------------------------------


def _deliver(data: str, attributes: dict[str, str], topic: str, published: datetime) -> Any:
    """What a deployed event function receives for a message: our push subscription's raw body,
    turned into a CloudEvent by functions-framework's own conversion."""
    import flask
    from functions_framework import event_conversion

    body = {
        "subscription": f"projects/p/subscriptions/warden-{topic}-push",
        "message": {
            "data": base64.b64encode(data.encode()).decode(),
            "attributes": attributes,
            "messageId": "4242",
            "publishTime": published.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        },
    }
    app = flask.Flask("push")
    with app.test_request_context(f"/projects/p/topics/{topic}", method="POST", json=body):
        return event_conversion.background_event_to_cloud_event(flask.request)


def _assert_jobs_agree(tf_jobs: dict[str, Any], config: WardenConfig) -> None:
    specs = {spec.job_id: spec for spec in job_specs(config)}
    assert set(tf_jobs) == set(specs)
    topics = _root()["locals"]["topics"]
    for job_id, job in tf_jobs.items():
        spec = specs[job_id]
        assert (job["model"], job["kind"]) == (spec.model, spec.kind)
        assert topics[job["topic"]] == spec.topic
        assert (job["cron"], job["timezone"]) == (spec.cron, spec.timezone)
        assert croniter.is_valid(job["cron"]), job_id
        ZoneInfo(job["timezone"])
        assert job["attributes"] == spec.attributes()
        assert json.loads(job["data"]) == spec.payload()
        # Cloud Scheduler publishes a moment after the slot it fires for.
        tz = ZoneInfo(job["timezone"])
        slot = croniter(job["cron"], datetime(2026, 11, 23, tzinfo=tz)).get_next(datetime)
        published = slot + timedelta(seconds=1.5)
        message = decode_pubsub_event(
            _deliver(job["data"], job["attributes"], spec.topic, published)
        )
        if spec.kind == "flush":
            assert decode_json_payload(message) == {"schema": 1, "kind": "flush"}
            continue
        request = parse_run_request(message, config, job=spec.kind)
        assert request.model == spec.model
        assert request.reason == "schedule"
        # A scheduled tick is keyed by its cron slot, so a double-fired slot deduplicates.
        assert (
            request.key == f"{spec.kind}:{spec.model}:scheduled:{slot.astimezone(UTC).isoformat()}"
        )


def test_scheduler_jobs_match_the_python_derivation(
    tf_config: dict[str, Any], config: WardenConfig
) -> None:
    _assert_jobs_agree(tf_config["scheduler_jobs"], config)
    assert tf_config["alerting_enabled"] is True
    assert tf_config["models"] == sorted(config.models)


def test_variant_config_agrees_too(tmp_path: Path) -> None:
    text = _variant_yaml()
    (tmp_path / "warden.yaml").write_text(text)
    config = load_config(tmp_path / "warden.yaml")
    evaluated = _evaluate_config(text, tmp_path / "tf")
    _assert_jobs_agree(evaluated["scheduler_jobs"], config)
    assert evaluated["alerting_enabled"] is False
    assert any(j["kind"] == "housekeeping" for j in evaluated["scheduler_jobs"].values())
    _assert_policies_agree(evaluated["alert_policies"], config)


def test_scheduler_resource_publishes_the_derived_payload() -> None:
    job = _resources("google_cloud_scheduler_job")["job"]
    assert job["for_each"] == "${module.config.scheduler_jobs}"
    assert job["schedule"] == "${each.value.cron}"
    assert job["time_zone"] == "${each.value.timezone}"
    target = job["pubsub_target"]
    assert target["data"] == "${base64encode(each.value.data)}"
    assert target["attributes"] == "${each.value.attributes}"
    assert target["topic_name"] == "${google_pubsub_topic.topic[each.value.topic].id}"


# --- metrics and alert policies -------------------------------------------------------------------


def _assert_policies_agree(tf_policies: dict[str, Any], config: WardenConfig) -> None:
    assert set(tf_policies) == {p.name for p in config.alert_policies}
    for policy in config.alert_policies:
        tf = tf_policies[policy.name]
        dumped = policy.model_dump()
        for field in ["metric", "comparison", "threshold", "duration_s", "severity", "filter"]:
            assert tf[field] == dumped[field], (policy.name, field)
        assert tf["runbook"] == policy.runbook
        assert policy.metric in CATALOGUE, f"{policy.name} watches a metric nobody writes"
        # Cloud Monitoring only compares GT/LT: the nudged threshold must decide like the code.
        t = policy.threshold
        api_t = tf["api_threshold"]
        for value in [t - 1, t - 1e-6, t, t + 1e-6, t + 1]:
            fires = value > api_t if tf["api_comparison"] == "COMPARISON_GT" else value < api_t
            assert fires == policy.breached(value), (policy.name, value)


def test_alert_policies_match_the_config_and_decide_like_the_code(
    tf_config: dict[str, Any], config: WardenConfig
) -> None:
    assert config.alert_policies
    _assert_policies_agree(tf_config["alert_policies"], config)


def test_metric_descriptors_are_the_catalogue_the_code_enforces() -> None:
    declared = _root()["locals"]["metrics"]
    assert set(declared) == set(CATALOGUE)
    for name, spec in CATALOGUE.items():
        assert tuple(declared[name]["labels"]) == spec.labels, name
        assert declared[name]["unit"] == spec.unit, name
        assert declared[name]["description"] == spec.description, name
    descriptor = _resources("google_monitoring_metric_descriptor")["warden"]
    assert descriptor["for_each"] == "${local.metrics}"
    assert (descriptor["metric_kind"], descriptor["value_type"]) == ("GAUGE", "DOUBLE")


def _anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_policy_links_an_existing_runbook(config: WardenConfig) -> None:
    runbooks = ROOT / "docs" / "RUNBOOKS.md"
    anchors = _anchors(runbooks.read_text())
    for policy in config.alert_policies:
        path, _, anchor = policy.runbook.partition("#")
        assert (ROOT / path) == runbooks, policy.name
        assert anchor in anchors, f"{policy.name}: no #{anchor} in docs/RUNBOOKS.md"
    policies = _resources("google_monitoring_alert_policy")
    assert {"config", "function_errors", "stale_pipeline", "dead_letters", "health"} <= set(
        policies
    )
    for label, body in policies.items():
        content = body["documentation"]["content"]
        assert "Runbook: ${var.runbook_base_url}/" in content, label
        for anchor in re.findall(r"RUNBOOKS\.md#([a-z0-9-]+)", content):
            assert anchor in anchors, f"{label}: no #{anchor} in docs/RUNBOOKS.md"
        assert body["notification_channels"] == "${local.notification_channels}"


def test_every_custom_metric_terraform_watches_is_written_by_the_code() -> None:
    monitoring = (TF / "monitoring.tf").read_text()
    watched = set(re.findall(r'local\.metric_type\["([a-z_/]+)"\]', monitoring))
    assert watched  # e.g. the staleness policy on run/success
    assert watched <= set(CATALOGUE)


def test_incidents_reach_the_router_with_its_token() -> None:
    """Basic auth with the token in sensitive_labels, never in the URL (which Cloud Run's
    request log keeps): the same user the local Monitoring stand-in presents."""
    channel = _resources("google_monitoring_notification_channel")["router"]
    assert channel["type"] == "webhook_basicauth"
    assert channel["labels"]["url"] == '${module.function["route_alerts"].uri}'
    assert channel["labels"]["username"] == BASIC_AUTH_USER
    assert channel["sensitive_labels"]["password"] == "${random_password.webhook_token.result}"
    text = "\n".join(p.read_text() for p in TF.rglob("*.tf"))
    assert "auth_token" not in text
    # The token's value is in no output (the secret's id is).
    for name, output in _root()["output"].items():
        assert "random_password" not in str(output["value"]), name
    uptime = _resources("google_monitoring_uptime_check_config")["health"]
    assert 'module.function["health"].uri' in uptime["monitored_resource"]["labels"]["host"]
    assert uptime["http_check"]["service_agent_authentication"]["type"] == "OIDC_TOKEN"


def test_the_pub_sub_notification_channel_is_the_alternative_to_the_public_webhook() -> None:
    """var.alert_channel picks one door: the webhook (route_alerts public) or a Pub/Sub channel
    on model-events (route_alert_events reads incidents by shape; route_alerts internal-only)."""
    variable = _root()["variable"]["alert_channel"]
    assert variable["default"] == "webhook"
    assert 'contains(["webhook", "pubsub"], var.alert_channel)' in str(variable["validation"])
    channels = _resources("google_monitoring_notification_channel")
    assert channels["router"]["count"] == '${var.alert_channel == "webhook" ? 1 : 0}'
    pubsub = channels["router_pubsub"]
    assert pubsub["count"] == '${var.alert_channel == "pubsub" ? 1 : 0}'
    assert pubsub["type"] == "pubsub"
    assert pubsub["labels"]["topic"] == '${google_pubsub_topic.topic["events"].id}'
    # The incidents arrive where route_alert_events is triggered
    # (warden.config.schedules.EVENTS_TOPIC).
    assert _root()["locals"]["function_defaults"]["route_alert_events"]["trigger"] == "events"
    grant = _resources("google_pubsub_topic_iam_member")["monitoring_notifications"]
    assert grant["count"] == '${var.alert_channel == "pubsub" ? 1 : 0}'
    assert grant["role"] == "roles/pubsub.publisher"
    assert "gcp-sa-monitoring-notification" in grant["member"]
    assert grant["topic"] == '${google_pubsub_topic.topic["events"].name}'
    ingress = _root()["locals"]["function_defaults"]["route_alerts"]["ingress"]
    assert ingress == '${var.alert_channel == "webhook" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"}'
    invokers = _root()["locals"]["function_invokers"]["route_alerts"]
    assert invokers == '${var.alert_channel == "webhook" ? {public = "allUsers"} : {}}'
    # Every policy notifies whichever router channel exists.
    channels_local = _root()["locals"]["notification_channels"]
    assert "google_monitoring_notification_channel.router[*].id" in channels_local
    assert "google_monitoring_notification_channel.router_pubsub[*].id" in channels_local


def test_policies_carry_warden_severity_for_incidents_that_say_no_severity() -> None:
    """The API has no "info" severity: such policies send "no severity", and the router falls
    back to the policy's ``severity`` user label (warden.alerts.alert_from_incident)."""
    labels = _resources("google_monitoring_alert_policy")["config"]["user_labels"]
    assert labels["severity"] == "${each.value.severity}"


# --- Cloud Run jobs (the job runner) -------------------------------------------------------------

#: The function each Cloud Run job stands in for: the same use case, run as a job execution.
JOB_FUNCTIONS = {"retrain": "retrain_model", "monitor": "monitor_model"}
#: The image var.job_image gets from the pipeline: the pushed digest.
JOB_IMAGE = f"europe-west1-docker.pkg.dev/acme-ml-prod/acme-wdn-jobs/warden-jobs@sha256:{'c' * 64}"
JOB_LOCALS = (
    "job_functions",
    "job_defaults",
    "job_names",
    "job_environment",
    "jobs",
    "job_runner_roles",
    "job_runner_grants",
)


def _hcl_expression(value: Any) -> str:
    """HCL for a value python-hcl2 read: ``${x}`` is the expression x, anything else a literal."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return value[2:-1]
    return f"jsondecode({json.dumps(json.dumps(value))})"


def _job_locals(workdir: Path, *variables: str) -> tuple[int, Any]:
    """jobs.tf's locals, iam.tf's job grants and functions.tf's environment (resource attributes
    stubbed as "stub-NAME"), applied with variables.tf, the example tfvars and ``-var``
    VARIABLES by a real terraform (no provider): (exit code, outputs or the error text)."""
    exe = _terraform()
    env = _tf_env(workdir)
    if not (workdir / "main.tf").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        for name in ("variables.tf", "terraform.tfvars.example"):
            shutil.copy(TF / name, workdir / name)
        locals_ = _root()["locals"]
        lines = [f"  {name} = {_hcl_expression(locals_[name])}" for name in JOB_LOCALS]
        environment = []
        for key, value in locals_["environment"].items():
            stub = isinstance(value, str) and re.search(r"\bgoogle_|local\.data_bucket", value)
            environment.append(
                f"    {key} = {json.dumps(f'stub-{key}') if stub else _hcl_expression(value)}"
            )
        (workdir / "main.tf").write_text(
            "locals {\n"
            + "\n".join(lines)
            + "\n  environment = {\n"
            + "\n".join(environment)
            + "\n  }\n}\n"
            + 'output "jobs" {\n  value = {\n'
            + "".join(f"    {name} = local.{name}\n" for name in [*JOB_LOCALS, "environment"])
            + "  }\n}\n"
        )
        init = subprocess.run(
            [exe, "init", "-input=false", "-no-color"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert init.returncode == 0, init.stdout + init.stderr
    args = [exe, "apply", "-auto-approve", "-no-color", "-var-file=terraform.tfvars.example"]
    args += [f"-var={v}" for v in variables]
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return done.returncode, done.stdout + done.stderr
    return 0, _output(exe, workdir, env, "jobs")


def test_each_job_runs_its_functions_use_case_with_the_functions_environment(
    tmp_path: Path,
) -> None:
    assert _root()["locals"]["job_functions"] == JOB_FUNCTIONS
    code, out = _job_locals(tmp_path, f"job_image={JOB_IMAGE}")
    assert code == 0, out
    environment, jobs = out["environment"], out["jobs"]
    assert set(jobs) == set(JOB_FUNCTIONS)
    for job, fn in JOB_FUNCTIONS.items():
        assert jobs[job]["function"] == fn
        assert jobs[job]["name"] == f"acme-wdn-{job}"
        # The functions find the jobs by full name, built without a reference to the jobs.
        name = f"projects/acme-ml-prod/locations/europe-west1/jobs/acme-wdn-{job}"
        assert out["job_names"][job] == name
        assert environment[f"WARDEN_{job.upper()}_JOB"] == name
        # A task gets what a function gets, plus which use case it runs; its request comes per
        # execution (the run's overrides), never from Terraform.
        assert out["job_environment"][job] == {**environment, "WARDEN_JOB": job}
        assert "WARDEN_RUN_REQUEST" not in out["job_environment"][job]
        context = settings.TaskContext.from_env(
            {**out["job_environment"][job], "WARDEN_RUN_REQUEST": "{}"}
        )
        assert context.job == job
    assert set(settings.JOB_ENV_VARS) == {"WARDEN_JOB", "WARDEN_RUN_REQUEST"}
    # Sizes: the defaults, then var.jobs field by field (the example tfvars sizes retrain up).
    assert {k: jobs["monitor"][k] for k in ("cpu", "memory", "timeout_seconds", "max_retries")} == {
        "cpu": "2",
        "memory": "4Gi",
        "timeout_seconds": 3600,
        "max_retries": 2,
    }
    assert _root()["locals"]["job_defaults"]["retrain"] == {
        "cpu": "4",
        "memory": "16Gi",
        "timeout_seconds": 3600,
        "max_retries": 2,
    }
    assert (jobs["retrain"]["cpu"], jobs["retrain"]["memory"]) == ("8", "32Gi")
    # The local stack runs the same jobs with the same retries and timeout.
    assert set(RUN_JOBS) == set(JOB_FUNCTIONS)
    for defaults in _root()["locals"]["job_defaults"].values():
        assert defaults["max_retries"] == RUN_JOB_MAX_RETRIES
        assert f"{defaults['timeout_seconds']}s" == RUN_JOB_TIMEOUT
    code, out = _job_locals(
        tmp_path, f"job_image={JOB_IMAGE}", "jobs={monitor = {max_retries = 0}}"
    )
    assert code == 0, out
    assert out["jobs"]["monitor"]["max_retries"] == 0
    assert out["jobs"]["retrain"]["memory"] == "16Gi"
    # No image yet (the first deploy): no job, and the functions know there is none.
    code, out = _job_locals(tmp_path)
    assert code == 0, out
    assert out["jobs"] == {}
    assert out["job_runner_grants"] == {}
    assert out["environment"]["WARDEN_RETRAIN_JOB"] == ""
    assert out["environment"]["WARDEN_MONITOR_JOB"] == ""


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("job_image=europe-west1-docker.pkg.dev/p/r/warden-jobs", "digest (@sha256:...) or a tag"),
        ("job_image=europe-west1-docker.pkg.dev/p/r/warden-jobs:latest", "other than latest"),
        ("job_image=warden jobs", "full image reference"),
        ('jobs={retrian = {cpu = "2"}}', "keys must be retrain or monitor"),
        ('jobs={retrain = {cpu = "3"}}', "cpu must be"),
        ('jobs={monitor = {memory = "4G"}}', "memory must be a size"),
        ("jobs={monitor = {timeout_seconds = 604801}}", "between 60 and 604800"),
        ("jobs={monitor = {max_retries = 11}}", "between 0 and 10"),
    ],
)
def test_job_variables_are_validated(tmp_path: Path, variable: str, message: str) -> None:
    code, out = _job_locals(tmp_path, variable)
    assert code != 0
    assert message in " ".join(out.split()), out


def test_each_job_has_its_own_account_and_deploys_the_pipelines_image() -> None:
    accounts = _resources("google_service_account")
    job_accounts = accounts["job"]
    assert job_accounts["for_each"] == "${local.job_functions}"
    assert job_accounts["account_id"] == "${var.prefix}-${each.key}-job"
    function_names = {k.replace("_", "-") for k in _root()["locals"]["function_defaults"]}
    assert not {f"{job}-job" for job in JOB_FUNCTIONS} & function_names
    job = _resources("google_cloud_run_v2_job")["job"]
    assert job["for_each"] == "${local.jobs}"
    assert job["name"] == "${each.value.name}"
    assert job["location"] == "${var.region}"
    task = job["template"]["template"]
    assert task["service_account"] == "${google_service_account.job[each.key].email}"
    assert task["timeout"] == "${each.value.timeout_seconds}s"
    assert task["max_retries"] == "${each.value.max_retries}"
    container = task["containers"]
    assert container["image"] == "${var.job_image}"
    assert "command" not in container  # the image's ENTRYPOINT: python -m warden.jobs.task
    assert container["resources"]["limits"] == {
        "cpu": "${each.value.cpu}",
        "memory": "${each.value.memory}",
    }
    env = container["dynamic"]["env"]
    assert env["for_each"] == "${local.job_environment[each.key]}"
    assert env["content"] == {"name": "${env.key}", "value": "${env.value}"}
    # The image's repository: Docker, in the region, old images cleaned up.
    repository = _resources("google_artifact_registry_repository")["jobs"]
    assert repository["format"] == "DOCKER"
    assert repository["location"] == "${var.region}"
    assert repository["cleanup_policy_dry_run"] is False
    policies = {p["id"]: p for p in repository["cleanup_policies"]}
    assert policies["keep-newest"]["action"] == "KEEP"
    assert policies["delete-old"]["action"] == "DELETE"
    services = _root()["locals"]["services"]
    assert {"run.googleapis.com", "artifactregistry.googleapis.com"} <= set(
        re.findall(r"[a-z]+\.googleapis\.com", str(services))
    )


def test_only_the_matching_function_may_run_each_job(tmp_path: Path) -> None:
    """Per job, never project-wide: a function may start (with overrides) only the job that
    stands in for it; no account gets actAs on a job's account."""
    code, out = _job_locals(tmp_path, f"job_image={JOB_IMAGE}")
    assert code == 0, out
    # run.jobs.run + runWithOverrides (+ executions.cancel); dispatch reads the execution's name
    # from the run operation's metadata, so it needs no run.executions.get.
    roles = ["roles/run.jobsExecutorWithOverrides"]
    assert out["job_runner_roles"] == roles
    assert out["job_runner_grants"] == {
        f"{job}/{role}": {"job": job, "fn": fn, "role": role}
        for job, fn in JOB_FUNCTIONS.items()
        for role in roles
    }
    runner = _resources("google_cloud_run_v2_job_iam_member")["runner"]
    assert runner["for_each"] == "${local.job_runner_grants}"
    assert runner["name"] == "${google_cloud_run_v2_job.job[each.value.job].name}"
    assert runner["role"] == "${each.value.role}"
    assert (
        runner["member"] == "serviceAccount:${google_service_account.function[each.value.fn].email}"
    )
    # Additive members only (a binding or policy would take over the job's whole policy), and no
    # Cloud Run role anywhere else: the functions' module grants run.invoker on its own service.
    kinds = {k for k in _root()["resource"] if k.startswith("google_cloud_run")}
    assert kinds == {"google_cloud_run_v2_job", "google_cloud_run_v2_job_iam_member"}
    for role in {r for a in _principal_access().values() for r in a["project_roles"]}:
        assert not role.startswith("roles/run."), role
    # Running a job needs no actAs on its account (only deploying it does: the deployer's).
    assert set(_resources("google_service_account_iam_member")) == {"pubsub_token_creator"}


def test_each_jobs_account_has_exactly_its_functions_access() -> None:
    access = _principal_access()
    assert access == {
        **NEEDED,
        **{f"{job}_job": NEEDED[fn] for job, fn in JOB_FUNCTIONS.items()},
    }
    # The grants follow: every storage grant of a function is also its job's.
    grants = storage_grants()
    for job, fn in JOB_FUNCTIONS.items():
        of_function = sorted((b, r, c) for p, b, r, c in grants if p == fn)
        of_job = sorted(
            (b, r, c.replace(f"{job}_job", fn) if c else c)
            for p, b, r, c in grants
            if p == f"{job}_job"
        )
        assert of_job == of_function, job


# --- least privilege ----------------------------------------------------------------------------

#: What each function's code does with Google resources, hence the roles it needs. Read from
#: the use cases: retrain writes versions/aliases/ledger (registry), reads data, publishes
#: model-events and writes metrics; monitor reads the registry and writes only its reports, its
#: cooldown marker and its own run-ledger entries (``prefixes``: objectUser on those objects of
#: every model's folder, by IAM condition), reads data and requests retrains; housekeeping
#: deletes expired versions and run markers, writes snapshots to the backup bucket and expires
#: router state in the alert bucket; health only reads the registry; the routers keep their
#: state (``_alerting/``) in the alert bucket and touch nothing else in storage.
NEEDED = {
    "retrain_model": {
        "buckets": {"registry": "roles/storage.objectUser", "data": "roles/storage.objectViewer"},
        "prefixes": {},
        "topics": ["events"],
        "project_roles": ["roles/monitoring.metricWriter"],
    },
    "monitor_model": {
        "buckets": {
            "registry": "roles/storage.objectViewer",
            "data": "roles/storage.objectViewer",
        },
        "prefixes": {"registry": ["monitoring/", "runs/monitor/", "status/monitor.json"]},
        "topics": ["events", "retrain"],
        "project_roles": ["roles/monitoring.metricWriter"],
    },
    "housekeeping": {
        "buckets": {
            "registry": "roles/storage.objectUser",
            "backup": "roles/storage.objectUser",
            "alerts": "roles/storage.objectUser",
        },
        "prefixes": {},
        "topics": ["events"],
        "project_roles": ["roles/monitoring.metricWriter"],
    },
    "health": {
        "buckets": {"registry": "roles/storage.objectViewer"},
        "prefixes": {},
        "topics": [],
        "project_roles": [],
    },
    "route_alerts": {
        "buckets": {"alerts": "roles/storage.objectUser"},
        "prefixes": {},
        "topics": [],
        "project_roles": [],
    },
    "route_alert_events": {
        "buckets": {"alerts": "roles/storage.objectUser"},
        "prefixes": {},
        "topics": [],
        "project_roles": [],
    },
}

#: Storage roles that only read. Any other role on a bucket can create, replace or delete.
READ_ONLY_STORAGE_ROLES = frozenset(
    {
        "roles/storage.objectViewer",
        "roles/storage.legacyObjectReader",
        "roles/storage.legacyBucketReader",
    }
)
#: Calls that claim, register, promote, roll back or retire versions
#: (warden.store.registry's writers).
VERSION_WRITES = (
    r"\bregistry(?:\(\))?\.(?:claim_version|register|promote|rollback|move_alias"
    r"|retire_manifest|restore_manifest|delete_files|delete_object|mark_retiring|clear_retiring)\("
)
#: Where the model lives: every object under MODEL/versions/ or MODEL/aliases/.
MODEL_OBJECTS = re.compile(r"^[^/]+/(?:versions|aliases)/")


@functools.cache  # four patterns × six functions walked the same closures (4.6 s of CPU)
def _warden_closure(main: Path) -> frozenset[str]:
    """Warden modules a function can reach: imports at any depth, including lazy ones."""
    seen: set[str] = set()
    todo = [main]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                path = ROOT / "shared" / (name.replace(".", "/") + ".py")
                if name.startswith("warden") and path.exists() and name not in seen:
                    seen.add(name)
                    todo.append(path)
    return frozenset(seen)


def _functions_that(pattern: str) -> set[str]:
    users = set()
    for name, f in _root()["locals"]["function_defaults"].items():
        modules = _warden_closure(ROOT / "functions" / f["source"] / "main.py")
        sources = [(ROOT / "shared" / (m.replace(".", "/") + ".py")).read_text() for m in modules]
        if any(re.search(pattern, s) for s in sources):
            users.add(name)
    return users


def test_each_function_gets_exactly_the_roles_its_code_needs() -> None:
    access = _root()["locals"]["access"]
    assert access == NEEDED
    # Cross-check the table against the code: metrics and model events come from the use cases
    # that call them, and no other function holds those roles.
    writers = {
        f for f, a in NEEDED.items() if "roles/monitoring.metricWriter" in a["project_roles"]
    }
    assert writers == _functions_that(r"\.metrics\(\)\.write\(")
    publishers = {f for f, a in NEEDED.items() if "events" in a["topics"]}
    assert publishers == _functions_that(r"\.events\(\)\.(try_)?publish\(")
    # The router's state: exactly the functions that use it hold a role on the alert bucket
    # (objectUser: compare-and-swap writes, deletes, listing), and they hold it nowhere else.
    alert_users = {f for f, a in NEEDED.items() if "alerts" in a["buckets"]}
    assert alert_users == _functions_that(r"\.alert_state\(\)")
    assert {NEEDED[f]["buckets"]["alerts"] for f in alert_users} == {"roles/storage.objectUser"}
    # The registry: only the functions whose code reads it (registry, run ledger, reports) hold
    # any role on it. The routers read nothing there (retrain receivers publish to Pub/Sub).
    registry_users = {
        f for f, a in NEEDED.items() if "registry" in a["buckets"] or "registry" in a["prefixes"]
    }
    assert registry_users == _functions_that(
        r"\brt\.(?:registry|ledger)\(\)|\brt\.settings\.registry_bucket"
    )
    assert not registry_users & {"route_alerts", "route_alert_events"}


def _storage_iam_resources() -> dict[str, dict[str, Any]]:
    """Every storage IAM resource in the root module: only the two grant tables may exist."""
    kinds = [k for k in _root()["resource"] if k.startswith("google_storage_") and "_iam_" in k]
    assert kinds == ["google_storage_bucket_iam_member"], kinds
    return _resources("google_storage_bucket_iam_member")


@functools.cache
def _iam_locals() -> dict[str, Any]:
    """``local.principal_access`` and ``local.prefix_grants`` as Terraform computes them from
    iam.tf's own expressions (the access table, the jobs' functions, the CEL clause, the
    for-expressions), with bucket KEY named ``warden-KEY``."""
    import tempfile

    locals_ = _root()["locals"]
    expressions = {}
    for name in ("principal_access", "prefix_grants"):
        expression = locals_[name]
        assert expression.startswith("${")
        assert expression.endswith("}")
        expressions[name] = expression[2:-1]
    exe = _terraform()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "access.json").write_text(json.dumps(locals_["access"]))
        (workdir / "jobs.json").write_text(json.dumps(locals_["job_functions"]))
        (workdir / "clause.json").write_text(json.dumps(locals_["prefix_clause"]))
        names = {key: f"warden-{key}" for key in locals_["bucket_names"]}
        (workdir / "main.tf").write_text(
            "locals {\n"
            '  access           = jsondecode(file("${path.module}/access.json"))\n'
            '  job_functions    = jsondecode(file("${path.module}/jobs.json"))\n'
            '  prefix_clause    = jsondecode(file("${path.module}/clause.json"))\n'
            f"  bucket_names     = jsondecode({json.dumps(json.dumps(names))})\n"
            f"  principal_access = {expressions['principal_access']}\n"
            f"  prefix_grants    = {expressions['prefix_grants']}\n"
            "}\n"
            'output "iam" {\n'
            "  value = { principal_access = local.principal_access,"
            " prefix_grants = local.prefix_grants }\n"
            "}\n"
        )
        env = _tf_env(workdir)
        for args in (
            ["init", "-input=false", "-no-color"],
            ["apply", "-auto-approve", "-no-color"],
        ):
            done = subprocess.run(
                [exe, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"terraform {args[0]}:\n{done.stdout}\n{done.stderr}"
        return _output(exe, workdir, env, "iam")


def _prefix_grants() -> dict[str, Any]:
    return _iam_locals()["prefix_grants"]


def _principal_access() -> dict[str, Any]:
    return _iam_locals()["principal_access"]


def storage_grants() -> list[tuple[str, str, str, str | None]]:
    """(principal, bucket key, role, CEL condition or None) of every storage grant Terraform
    makes, conditions as deployed (bucket KEY named ``warden-KEY``). A principal is a function,
    or ``<job>_job``: a Cloud Run job's account."""
    resources = _storage_iam_resources()
    assert set(resources) == {"function", "prefix"}
    plain, scoped = resources["function"], resources["prefix"]
    assert plain["for_each"] == "${local.bucket_grants}"
    assert "condition" not in plain
    assert plain["role"] == "${each.value.role}"
    assert scoped["for_each"] == "${local.prefix_grants}"
    assert scoped["role"] == "roles/storage.objectUser"
    assert scoped["condition"]["expression"] == "${each.value.expression}"
    for resource in (plain, scoped):
        assert resource["bucket"] == "${local.bucket_names[each.value.bucket]}"
        assert resource["member"] == "${local.members[each.value.principal]}"
    grants: list[tuple[str, str, str, str | None]] = [
        (principal, bucket, role, None)
        for principal, a in _principal_access().items()
        for bucket, role in a["buckets"].items()
    ]
    grants += [
        (g["principal"], g["bucket"], "roles/storage.objectUser", g["expression"])
        for g in _prefix_grants().values()
    ]
    return grants


class Cel:
    """Just enough CEL to evaluate Warden's storage conditions against an object name:
    ``resource.name`` / ``resource.type`` / ``resource.service``, string literals, the methods
    ``extract`` / ``startsWith`` / ``endsWith``, ``==``, ``!=``, ``!``, ``&&``, ``||`` and
    parentheses. Anything else is an error, not a guess.

    ``extract("A{x}B")`` follows Google's attribute reference: what stands between the first A
    and the first B after it ("" if either is missing). ``greedy=True`` takes the last B
    instead, so a test can show a condition is safe under either reading.
    """

    TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(&&|\|\||==|!=|!|\(|\)|\.|,)|([A-Za-z_]\w*))')

    def __init__(self, expression: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(expression.rstrip()):
            m = self.TOKEN.match(expression, pos)
            assert m, f"CEL: cannot read {expression[pos : pos + 40]!r}"
            string, op, ident = m.groups()
            self.tokens.append(
                ("str", json.loads(string)) if string else ("op", op) if op else ("id", ident)
            )
            pos = m.end()
        self.pos = 0
        self.tree = self._or()
        assert self.pos == len(self.tokens), f"CEL: trailing {self.tokens[self.pos :]}"

    # -- parsing into nested tuples ---------------------------------------------------------
    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, kind: str, value: str | None = None) -> str:
        token = self._peek()
        if token is None or token[0] != kind or value not in (None, token[1]):
            raise AssertionError(f"CEL: expected {value or kind}, got {token}")
        self.pos += 1
        return token[1]

    def _or(self) -> Any:
        node = self._and()
        while self._peek() == ("op", "||"):
            self.pos += 1
            node = ("||", node, self._and())
        return node

    def _and(self) -> Any:
        node = self._unary()
        while self._peek() == ("op", "&&"):
            self.pos += 1
            node = ("&&", node, self._unary())
        return node

    def _unary(self) -> Any:
        if self._peek() == ("op", "!"):
            self.pos += 1
            return ("!", self._unary())
        left = self._value()
        if self._peek() in (("op", "=="), ("op", "!=")):
            op = self._take("op")
            return (op, left, self._value())
        return left

    def _value(self) -> Any:
        token = self._peek()
        if token == ("op", "("):
            self.pos += 1
            node = self._or()
            self._take("op", ")")
        elif token and token[0] == "str":
            self.pos += 1
            node = ("lit", token[1])
        else:
            path = [self._take("id")]
            while self._peek() == ("op", ".") and self.tokens[self.pos + 2] != ("op", "("):
                self.pos += 1
                path.append(self._take("id"))
            node = ("attr", ".".join(path))
        while self._peek() == ("op", "."):
            self.pos += 1
            method = self._take("id")
            self._take("op", "(")
            arg = self._take("str")
            self._take("op", ")")
            node = ("call", method, node, arg)
        return node

    # -- evaluation -------------------------------------------------------------------------
    def admits(self, resource_name: str, *, greedy: bool = False) -> bool:
        result = self._eval(self.tree, resource_name, greedy)
        assert isinstance(result, bool), result
        return result

    def _eval(self, node: Any, name: str, greedy: bool) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "attr":
            attributes = {
                "resource.name": name,
                "resource.type": "storage.googleapis.com/Object",
                "resource.service": "storage.googleapis.com",
            }
            return attributes[node[1]]
        if kind == "!":
            return not self._eval(node[1], name, greedy)
        if kind == "&&":
            return self._eval(node[1], name, greedy) and self._eval(node[2], name, greedy)
        if kind == "||":
            return self._eval(node[1], name, greedy) or self._eval(node[2], name, greedy)
        if kind in ("==", "!="):
            equal = self._eval(node[1], name, greedy) == self._eval(node[2], name, greedy)
            return equal if kind == "==" else not equal
        _, method, target, arg = node
        value = self._eval(target, name, greedy)
        if method == "startsWith":
            return value.startswith(arg)
        if method == "endsWith":
            return value.endswith(arg)
        assert method == "extract", f"CEL: unsupported method {method}"
        before, _, rest = arg.partition("{")
        _placeholder, _, after = rest.partition("}")
        start = value.find(before)
        if start < 0:
            return ""
        start += len(before)
        if not after:
            return value[start:]
        end = value.rfind(after, start) if greedy else value.find(after, start)
        return "" if end < 0 else value[start:end]


def object_resource(bucket_key: str, name: str) -> str:
    """An object's IAM resource name in the buckets ``storage_grants`` names."""
    return f"projects/_/buckets/warden-{bucket_key}/objects/{name}"


def _model_object_probes(prefixes: list[str]) -> list[str]:
    """Object names under MODEL/versions/ and MODEL/aliases/: the real ones, and ones built to
    trick a prefix condition (a granted prefix nested inside a version or the alias folder)."""
    tails = [
        "000001/model.joblib",
        "000001/manifest.json",
        "000001/claim.json",
        "000001/profile.json",
        "champion.json",
        "history/champion/00000001.json",
    ]
    for prefix in [*prefixes, "monitoring/", "runs/", "status/", "_alerting/"]:
        tails += [prefix, prefix + "x", f"000001/{prefix}x", f"history/champion/{prefix}x"]
        tails += [f"{prefix}/x", f"x/{prefix}", f"{prefix}000001/model.joblib"]
    names = [
        f"{model}/{folder}{tail}"
        for model in ("m", "customer-segments", "monitoring", "versions", "runs")
        for folder in ("versions/", "aliases/")
        for tail in tails
    ]
    assert all(MODEL_OBJECTS.match(n) for n in names)
    return names


def test_only_the_functions_that_register_or_retire_versions_can_write_the_models() -> None:
    """The public router, the monitor and health must not be able to replace model.joblib and
    its manifest together (the manifest's sha256 catches corruption, not a writer of both)."""
    allowed = _functions_that(VERSION_WRITES)
    assert allowed == {"retrain_model", "housekeeping"}  # retrain registers, housekeeping retires
    # ...and the job that runs retrains in a Cloud Run job, as retrain_model's stand-in.
    allowed |= {f"{job}_job" for job, fn in JOB_FUNCTIONS.items() if fn in allowed}
    prefixes = sorted({p for a in NEEDED.values() for ps in a["prefixes"].values() for p in ps})
    probes = _model_object_probes(prefixes)
    can_write = set()
    for fn, bucket, role, condition in storage_grants():
        if bucket != "registry" or role in READ_ONLY_STORAGE_ROLES:
            continue
        if condition is None:
            can_write.add(fn)
            continue
        cel = Cel(condition)
        for name in probes:
            for greedy in (False, True):  # whatever extract()'s matching rule
                if cel.admits(object_resource(bucket, name), greedy=greedy):
                    can_write.add(fn)
    assert can_write <= allowed, f"can write versions or aliases: {sorted(can_write - allowed)}"


@pytest.mark.parametrize("principal", ["monitor_model", "monitor_job"])
def test_the_monitor_writes_only_its_own_objects_and_reads_the_rest(principal: str) -> None:
    grants = [g for g in storage_grants() if g[0] == principal]
    assert {(b, r) for _, b, r, c in grants if c is None} == {
        ("registry", "roles/storage.objectViewer"),
        ("data", "roles/storage.objectViewer"),
    }
    (condition,) = [c for _, b, _, c in grants if c is not None and b == "registry"]
    cel = Cel(condition)
    run = "20261120T000000Z-0123abcd"
    for model in ("customer-segments", "breast-cancer-risk", "m"):
        for name in (
            f"{model}/monitoring/{run}/report.html",
            f"{model}/monitoring/{run}/drift.json",
            f"{model}/monitoring/retrain-request.json",
            f"{model}/runs/monitor/{'0' * 32}.json",
            f"{model}/status/monitor.json",
        ):
            assert cel.admits(object_resource("registry", name)), name
        for name in (
            f"{model}/runs/retrain/{'0' * 32}.json",  # another job's ledger
            f"{model}/status/retrain.json",
            f"{model}/status/housekeeping.json",
            f"{model}/reports/x.html",
            f"{model}/monitoring",  # the prefix needs its slash
            f"_alerting/groups/{model}.json",
            "monitoring/x",  # no model folder
            f"/{model}/monitoring/x",
            f"{model}//monitoring/x",
        ):
            assert not cel.admits(object_resource("registry", name)), name
    # Another bucket's objects never match, nor does the bucket itself (listing).
    assert not cel.admits("projects/_/buckets/warden-backup/objects/m/monitoring/x")
    assert not cel.admits("projects/_/buckets/warden-registry")


def test_iam_conditions_stay_small() -> None:
    """At most 12 logical operators per condition and a title within 100 characters (IAM's
    limits for conditions), and, with the longest prefix var.prefix allows, an expression under
    2,048 characters: the smallest limit Google documents for a CEL condition (credential access
    boundary rules), a conservative bound that also keeps more prefixes from piling up."""
    for grant in _prefix_grants().values():
        expression = grant["expression"]
        assert len(re.findall(r"&&|\|\||!(?!=)", expression)) <= 12, expression
        longest = expression.replace("warden-", "x" * 11 + "-")
        assert len(longest) < 2048, len(longest)
    condition = _resources("google_storage_bucket_iam_member")["prefix"]["condition"]
    longest = max(len(p) for p in _principal_access())
    assert len(condition["title"].replace("${each.value.principal}", "x" * longest)) <= 100


def test_no_broad_or_primitive_role_anywhere() -> None:
    text = "\n".join(p.read_text() for p in TF.rglob("*.tf"))
    roles = set(re.findall(r'"(roles/[A-Za-z.]+)"', text))
    assert roles
    for role in roles:
        assert role not in {"roles/owner", "roles/editor", "roles/viewer"}, role
        assert not role.lower().endswith("admin"), role
    project_roles = {r for a in NEEDED.values() for r in a["project_roles"]}
    assert project_roles == {"roles/monitoring.metricWriter"}
    assert _resources("google_project_iam_member")["function"]["for_each"] == (
        "${local.project_grants}"
    )


def test_one_service_account_per_function_and_only_the_router_is_public() -> None:
    accounts = _resources("google_service_account")
    assert accounts["function"]["for_each"] == "${local.functions}"
    assert accounts["function"]["account_id"] == "${var.prefix}-${each.value.name}"
    invokers = _root()["locals"]["function_invokers"]
    public = {fn for fn, members in invokers.items() if "allUsers" in str(members)}
    assert public == {"route_alerts"}
    topics = _resources("google_pubsub_topic_iam_member")
    for grant in (topics["function"], _resources("google_project_iam_member")["function"]):
        assert grant["member"] == "${local.members[each.value.principal]}"
    assert topics["function"]["role"] == "roles/pubsub.publisher"
    assert topics["receiver"]["role"] == "roles/pubsub.publisher"
    assert "google_service_account.function[each.value.fn].email" in topics["receiver"]["member"]
    # Members: each function's account under its key, each job's under "<job>_job".
    members = _root()["locals"]["members"]
    assert (
        '{for fn, sa in google_service_account.function : fn => "serviceAccount:${sa.email}"}'
        in (members)
    )
    assert (
        '{for job, sa in google_service_account.job : "${job}_job" => "serviceAccount:${sa.email}"}'
        in members
    )
    secrets = _resources("google_secret_manager_secret_iam_member")["accessor"]
    assert secrets["role"] == "roles/secretmanager.secretAccessor"
    function_secrets = _root()["locals"]["function_secrets"]
    without = {fn for fn, s in function_secrets.items() if s == {}}
    assert without == {"retrain_model", "monitor_model", "housekeeping", "health"}
