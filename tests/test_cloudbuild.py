"""cloudbuild.yaml: the deploy pipeline's shape, and the parts of it that can run here do."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from hcl2 import SerializationOptions

from warden.jobs.task import COMMAND

ROOT = Path(__file__).resolve().parents[1]
#: What a Cloud Run job's container runs (Dockerfile ENTRYPOINT; terraform/jobs.tf sets no
#: command or args): one task of an execution, the use case named by WARDEN_JOB.
JOB_COMMAND = COMMAND
#: Where the job-image step pushes (terraform/jobs.tf: the PREFIX-jobs repository in the region).
JOB_IMAGE = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_PREFIX}-jobs/warden-jobs"
ORDER = [
    "install-and-test",
    "pip-audit",
    "bundle",
    "job-image",
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


def _plan_script(build: dict[str, Any], apply: str, workspace: str = "/workspace") -> str:
    """What the plan step's shell runs for ``_APPLY=apply`` (Cloud Build's ${_X} and $$)."""
    script = str(_steps(build)["terraform-plan"]["args"][-1]).replace("$$", "$")
    script = script.replace("/workspace/", f"{workspace}/")
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


# --- the Cloud Run jobs' image -------------------------------------------------------------------


def _job_image_script(build: dict[str, Any], workspace: Path) -> str:
    """The job-image step's bash as Cloud Build hands it over, its /workspace moved to a tmp dir."""
    script = str(_steps(build)["job-image"]["args"][-1]).replace("$$", "$")
    return script.replace("/workspace/", f"{workspace}/").replace("${_PREFIX}", "wdn")


def _jobs_tf() -> dict[str, Any]:
    with (ROOT / "terraform" / "jobs.tf").open() as fh:
        return hcl2.load(
            fh,
            serialization_options=SerializationOptions(
                strip_string_quotes=True, explicit_blocks=False, with_comments=False
            ),
        )


def _resource(parsed: dict[str, Any], rtype: str, name: str) -> dict[str, Any]:
    for block in parsed["resource"]:
        if rtype in block and name in block[rtype]:
            return block[rtype][name]
    raise AssertionError(f"no {rtype}.{name}")


def _only_block(value: Any) -> dict[str, Any]:
    """python-hcl2 gives a nested block as a list of one dict."""
    if isinstance(value, list):
        assert len(value) == 1, value
        value = value[0]
    assert isinstance(value, dict), value
    return value


def test_the_job_image_is_built_after_the_tests_and_reaches_terraform(
    build: dict[str, Any],
) -> None:
    ids = [step["id"] for step in build["steps"]]
    assert ids.index("install-and-test") < ids.index("job-image") < ids.index("terraform-plan")
    step = _steps(build)["job-image"]
    assert step["name"] == "gcr.io/cloud-builders/docker"
    env = dict(e.split("=", 1) for e in step["env"])
    assert env["IMAGE"] == JOB_IMAGE
    assert env["COMMIT"] == "$SHORT_SHA"  # tagged with the commit
    assert env["APPLY"] == "${_APPLY}"
    script = _script(step)
    built = 'docker build --pull --build-arg "WARDEN_CODE_VERSION=$$tag" --tag "$$IMAGE:$$tag" .'
    assert built in script
    assert 'docker push "$$IMAGE:$$tag"' in script
    # The plan gets what the step wrote: the pushed digest, or the tag a plan-only build built.
    plan = _script(_steps(build)["terraform-plan"])
    assert "job_image=$$(cat /workspace/.job-image" in plan
    assert '"-var=job_image=$$job_image"' in plan
    # The image goes to the repository Terraform manages.
    parsed = _jobs_tf()
    repository = _resource(parsed, "google_artifact_registry_repository", "jobs")
    assert repository["repository_id"] == "${var.prefix}-jobs"
    assert repository["location"] == "${var.region}"
    assert repository["format"] == "DOCKER"
    assert JOB_IMAGE.startswith("${_REGION}-docker.pkg.dev/$PROJECT_ID/${_PREFIX}-jobs/")


def _run_job_image_step(
    build: dict[str, Any], tmp_path: Path, *, apply: str, commit: str, push_error: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[str], str]:
    """The job-image step with a fake docker: (result, docker calls, .job-image contents)."""
    workspace = tmp_path / f"ws-{apply}-{commit or 'none'}-{len(push_error)}"
    bin_dir = workspace / "bin"
    bin_dir.mkdir(parents=True)
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$DOCKER_LOG"\n'
        'case "$1" in\n'
        '  push) if [ -n "$PUSH_ERROR" ]; then echo "$PUSH_ERROR" >&2; exit 1; fi ;;\n'
        '  inspect) echo "$IMAGE@sha256:$DIGEST" ;;\n'
        "esac\n"
    )
    docker.chmod(0o755)
    image = "europe-west1-docker.pkg.dev/p/wdn-jobs/warden-jobs"
    done = subprocess.run(
        ["bash", "-ceu", _job_image_script(build, workspace)],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "IMAGE": image,
            "COMMIT": commit,
            "BUILD": "0123abcd-4567-89ef-0123-456789abcdef",
            "APPLY": apply,
            "DOCKER_LOG": str(workspace / "docker.log"),
            "PUSH_ERROR": push_error,
            "DIGEST": "a" * 64,
        },
    )
    log = workspace / "docker.log"
    calls = log.read_text().splitlines() if log.exists() else []
    out = workspace / ".job-image"
    return done, calls, out.read_text().strip() if out.exists() else "<missing>"


def test_the_job_image_step_runs_here(tmp_path: Path, build: dict[str, Any]) -> None:
    """Plan-only: built, not pushed, planned with the tag. Apply: pushed, planned with the
    digest. First apply (no repository yet): no job. Any other push failure fails the build."""
    image = "europe-west1-docker.pkg.dev/p/wdn-jobs/warden-jobs"

    done, calls, ref = _run_job_image_step(build, tmp_path, apply="false", commit="abc1234")
    assert done.returncode == 0, done.stderr
    assert [c.split()[0] for c in calls] == ["build"]
    assert f"--tag {image}:abc1234" in calls[0]
    assert "WARDEN_CODE_VERSION=abc1234" in calls[0]
    assert ref == f"{image}:abc1234"

    done, calls, ref = _run_job_image_step(build, tmp_path, apply="true", commit="abc1234")
    assert done.returncode == 0, done.stderr
    assert [c.split()[0] for c in calls] == ["build", "push", "inspect"]
    assert calls[1] == f"push {image}:abc1234"
    assert ref == f"{image}@sha256:{'a' * 64}"

    # `gcloud builds submit` has no commit: the build id names the image.
    done, calls, ref = _run_job_image_step(build, tmp_path, apply="true", commit="")
    assert done.returncode == 0, done.stderr
    assert calls[1] == f"push {image}:build-0123abcd"

    missing = 'name unknown: Repository "wdn-jobs" not found'
    done, calls, ref = _run_job_image_step(
        build, tmp_path, apply="true", commit="abc1234", push_error=missing
    )
    assert done.returncode == 0, done.stderr
    assert ref == ""
    assert "next build deploys the jobs" in done.stderr

    done, _, _ = _run_job_image_step(
        build, tmp_path, apply="true", commit="abc1234", push_error="denied: Permission denied"
    )
    assert done.returncode != 0


def test_the_plan_takes_the_job_image_the_step_wrote(tmp_path: Path, build: dict[str, Any]) -> None:
    def planned(content: str | None) -> list[str]:
        workspace = tmp_path / f"ws-{len(content or '')}-{content is None}"
        workspace.mkdir()
        if content is not None:
            (workspace / ".job-image").write_text(content + "\n")
        script = _plan_script(build, "true", str(workspace))
        out = subprocess.run(
            ["sh", "-c", script.replace("terraform plan", "echo terraform plan")],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin", "PROJECT_ID": "p"},
        ).stdout
        return shlex.split(out)

    digest = f"europe-west1-docker.pkg.dev/p/wdn-jobs/warden-jobs@sha256:{'b' * 64}"
    assert f"-var=job_image={digest}" in planned(digest)
    for nothing in ("", None):
        assert not [a for a in planned(nothing) if "job_image" in a]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "Dockerfile ends in a continuation line"
    return instructions


def test_the_dockerfile_builds_a_pinned_non_root_job_image(build: dict[str, Any]) -> None:
    instructions = _dockerfile()
    kinds = [k for k, _ in instructions]
    # Pinned to a patch release of the Python the functions and the test image run (3.11).
    (base,) = [args for kind, args in instructions if kind == "FROM"]
    match = re.fullmatch(r"python:(3\.11)\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    assert match, base
    assert '[ "$$py" = 3.11 ]' in _script(_steps(build)["install-and-test"])
    env = " ".join(args for kind, args in instructions if kind == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    # Dependencies from the pins only, without pip's cache in the image.
    pip = [args for kind, args in instructions if kind == "RUN" and "pip install" in args]
    assert len(pip) == 1
    assert "-r requirements.txt -c constraints.txt" in pip[0]
    assert "--no-cache-dir" in pip[0]
    # Only the package, its pins and warden.yaml go in: no tests, tooling, .venv or build/.
    sources = set()
    for kind, args in instructions:
        if kind == "COPY":
            assert not args.startswith("--from"), args
            sources |= set(args.split()[:-1])
    assert sources == {"requirements.txt", "constraints.txt", "shared/warden/", "warden.yaml"}
    # A non-root user runs the entry point, which is the job's command.
    users = [i for i, k in enumerate(kinds) if k == "USER"]
    assert users, "no USER: the job would run as root"
    user = instructions[users[-1]][1].split(":")[0]
    assert user not in {"root", "0"}
    assert kinds[-1] == "ENTRYPOINT"
    assert users[-1] < len(kinds) - 1
    assert json.loads(instructions[-1][1]) == list(JOB_COMMAND)
    # Terraform runs the image's ENTRYPOINT as is: no command or args on the job's container.
    job = _resource(_jobs_tf(), "google_cloud_run_v2_job", "job")
    container = _only_block(_only_block(_only_block(job["template"])["template"])["containers"])
    assert "command" not in container
    assert "args" not in container
    assert container["image"] == "${var.job_image}"


def test_the_docker_context_holds_only_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allowlist: everything is ignored first"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert allowed == {"requirements.txt", "constraints.txt", "warden.yaml", "shared/warden"}
    # The CLI stays out, as it does from the function bundles (warden_local.bundle).
    assert "shared/warden/cli" in patterns
    assert patterns.index("shared/warden/cli") > patterns.index("!shared/warden")


def test_the_job_entry_point_does_not_need_what_the_image_leaves_out() -> None:
    """warden.jobs.task (the ENTRYPOINT's module) must not reach warden.cli, which the image
    does not ship."""
    module = JOB_COMMAND[-1]
    entry = ROOT / "shared" / (module.replace(".", "/") + ".py")
    if not entry.exists():
        pytest.skip(f"{module} is not written yet")
    seen: set[str] = set()
    todo = [entry]
    while todo:
        for node in ast.walk(ast.parse(todo.pop().read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if not name.startswith("warden") or name in seen:
                    continue
                seen.add(name)
                base = ROOT / "shared" / name.replace(".", "/")
                for path in (base.with_suffix(".py"), base / "__init__.py"):
                    if path.exists():
                        todo.append(path)
    assert not {n for n in seen if n == "warden.cli" or n.startswith("warden.cli.")}
