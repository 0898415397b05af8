# The Cloud Run jobs' image (terraform/jobs.tf): Warden's package and its pinned dependencies,
# running one task of a job execution. cloudbuild.yaml's job-image step builds it from the tested
# checkout and pushes it; docs/deploy.md, "Cloud Run jobs".
#
# Base: Python 3.11 on Debian 12 (bookworm), as the functions' python311 runtime and the test
# image (pins in constraints.txt are resolved for 3.11), pinned to a patch release. For a base
# that can never change under the same tag, pin its digest too (look it up where a registry is
# reachable; this file was written offline):
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   # "Digest: sha256:..."
#   FROM python:3.11.14-slim-bookworm@sha256:<that digest>
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, as root (the runtime user cannot change them): requirements.txt's direct
# pins, every transitive one held by constraints.txt (the full lock), so nothing floats.
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt \
    && rm requirements.txt constraints.txt

# The package itself, on PYTHONPATH rather than built (no unpinned build backend in the image):
# shared/warden without warden.cli, like the function bundles (.dockerignore), plus the
# warden.yaml it reads from the working directory (warden.settings: config_path).
COPY shared/warden/ /app/warden/
COPY warden.yaml /app/warden.yaml
# Bytecode compiled once here: the runtime user cannot (and PYTHONDONTWRITEBYTECODE need not) write it.
RUN python -m compileall -q /app/warden

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/warden \
        --shell /usr/sbin/nologin warden

# The commit the image was built from (cloudbuild.yaml: --build-arg), as the functions report
# their bundle hash.
ARG WARDEN_CODE_VERSION=dev
ENV WARDEN_CODE_VERSION=${WARDEN_CODE_VERSION}

USER warden:warden

# One task of an execution: WARDEN_JOB (the job's env, Terraform) says which use case,
# WARDEN_RUN_REQUEST (the execution's overrides) which request; no command or args in Terraform.
ENTRYPOINT ["python", "-m", "warden.jobs.task"]
