"""cloudbuild.yaml: the deploy pipeline's shape, and the parts of it that can run here do."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ORDER = [
    "install-and-test",
    "pip-audit",
    "bundle",
    "terraform-fmt",
    "terraform-init",
    "terraform-plan",
    "terraform-apply",
]


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


def _steps(build: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in build["steps"]}


def _script(step: dict[str, Any]) -> str:
    return "\n".join(str(a) for a in step.get("args", []))


def test_steps_run_in_order_in_one_workspace(build: dict[str, Any]) -> None:
    ids = [step["id"] for step in build["steps"]]
    assert [i for i in ids if i in ORDER] == ORDER
    for step in build["steps"]:
        # Relative dirs only: every step shares /workspace (the checkout, .venv, build/, tfplan).
        assert not str(step.get("dir", "")).startswith("/"), step["id"]
        assert "waitFor" not in step, f"{step['id']}: the pipeline is sequential on purpose"


def test_substitutions_and_trigger_split(build: dict[str, Any]) -> None:
    subs = build["substitutions"]
    assert {"_REGION", "_PREFIX", "_STATE_BUCKET", "_APPLY"} <= set(subs)
    assert subs["_APPLY"] == "false", "a build applies only when a trigger asks for it"
    header = (ROOT / "cloudbuild.yaml").read_text().split("substitutions:")[0]
    assert "pull request" in header
    assert "_APPLY=true" in header


def test_each_step_does_its_job(build: dict[str, Any]) -> None:
    steps = _steps(build)
    assert re.search(r"^\s*make test\s*$", _script(steps["install-and-test"]), re.M)
    audit = _script(steps["pip-audit"])
    assert "pip-audit" in audit
    assert "-r requirements.txt" in audit
    assert "python -m warden_local.bundle --out build" in _script(steps["bundle"])
    assert "terraform fmt -check" in _script(steps["terraform-fmt"])
    init = _script(steps["terraform-init"])
    assert "terraform init" in init
    assert '-backend-config="bucket=${_STATE_BUCKET}"' in init
    plan = _script(steps["terraform-plan"])
    assert "-out=tfplan" in plan
    for var in ["project_id=$PROJECT_ID", "region=${_REGION}", "prefix=${_PREFIX}"]:
        assert f"-var={var}" in plan
    apply = _script(steps["terraform-apply"])
    assert "terraform apply -input=false tfplan" in apply
    assert '"${_APPLY}" = "true"' in apply
    for step in ["terraform-fmt", "terraform-init", "terraform-plan", "terraform-apply"]:
        assert steps[step]["dir"] == "terraform"


def test_the_test_step_is_the_readme_test_command(build: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme.split("## Two commands")[1].split("##")[0]
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == "make test"


def test_the_bundle_step_runs_here(tmp_path: Path, build: dict[str, Any]) -> None:
    """The exact bundle command of the pipeline, run from the repository like Cloud Build does."""
    command = _script(_steps(build)["bundle"]).splitlines()[-1].strip()
    assert command.startswith(".venv/bin/python -m warden_local.bundle --out build")
    out = tmp_path / "build"
    done = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "warden_local.bundle", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    zips = {p.stem for p in out.glob("*.zip")}
    function_sources = {p.parent.name for p in (ROOT / "functions").glob("*/main.py")}
    assert zips == function_sources


def _plan_script(build: dict[str, Any], apply: str) -> str:
    """What the plan step's shell runs for ``_APPLY=apply`` (Cloud Build's ${_X} and $$)."""
    script = str(_steps(build)["terraform-plan"]["args"][-1]).replace("$$", "$")
    return script.replace("${_APPLY}", apply).replace("${_TFVARS}", "")


def test_pull_requests_are_planned_read_only(build: dict[str, Any]) -> None:
    """The plan trigger runs unreviewed code as warden-planner, which holds no write role and
    takes no state lock; only the apply trigger, on main, runs as the deployer."""
    for apply, flag in (("false", "-lock=false"), ("true", "-lock-timeout=300s")):
        script = _plan_script(build, apply)
        out = subprocess.run(
            ["sh", "-c", script.replace("terraform plan", "echo terraform plan")],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin", "PROJECT_ID": "p"},
        ).stdout
        assert flag in out.split(), out
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    triggers = re.findall(
        r"--name=(warden-\w+).*?--service-account=\"[^\"]*\$(\w+)\"", deploy, re.DOTALL
    )
    assert dict(triggers) == {"warden-plan": "PLANNER", "warden-apply": "DEPLOYER"}
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("gcloud iam service-accounts create warden-planner") :]
    block = block[: block.index("```")]
    roles = set(re.findall(r"roles/[\w.]+", block))
    assert roles == {
        "roles/viewer",
        "roles/iam.securityReviewer",
        "roles/secretmanager.viewer",
        "roles/logging.logWriter",
        "roles/storage.objectViewer",
    }
    assert not {r for r in roles if re.search(r"admin|editor|owner|User$|Creator$", r, re.I)}
