# Two commands matter: `make demo` (run the system locally) and `make test` (run the tests).
# Both set up .venv from pinned requirements first, so they work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test check-tools lint format lock clean bundle checkov tfschema tfschema-cache bench-health bench-drift bench-router bench-serving bench-scale

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: install
	$(BIN)/warden demo

# Five workers on two cores: most tests wait on emulators, subprocesses and virtual clocks, not on
# the CPU. With four, the first minute had stretches where all four waited at once (cores 30-70 %
# busy); a fifth keeps them busy (measured 2026-12-07, same tree, alternating runs: -n 4 241.8 and
# 227.4 s, -n 5 210.6 and 231.9 s).
# Bytecode is written (whatever the shell says): the suite starts ~150 Python processes (function
# servers, job tasks, the CLI) that would otherwise each compile the package again, and each
# worker would rewrite every test module's asserts again. A collection run while lint runs (on
# the core lint leaves idle) writes those caches once: each worker then collects in ~4 s, not ~7.
test: install
	@env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -q >/dev/null 2>&1 & \
	$(MAKE) --no-print-directory checkov check-tools lint tfschema-cache; status=$$?; wait; \
	exit $$status
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -n 5 --dist loadfile

# Function bundles (build/NAME/, build/NAME.zip, build/bundles.json) that Terraform deploys.
bundle: install
	$(BIN)/python -m warden_local.bundle --out build

# checkov scans terraform/ from the test suite; it lives in its own virtualenv because its
# bc-python-hcl2 shadows the python-hcl2 that the suite imports.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

# The Google and random provider schemas that tests/test_terraform_schema.py holds terraform/ to,
# from the cdktf bindings on npm (`npm pack`, cached in ~/.npm), extracted into .cache/tfschema/.
tfschema-cache: install
	$(BIN)/python -m warden_local.tfschema --fetch-only

# Every resource, data source, provider and module call in terraform/ against those schemas.
tfschema: tfschema-cache
	$(BIN)/python -m warden_local.tfschema terraform

# Prints only the reason (with its install hint) when the emulator or Java is missing.
PUBSUB_PREFLIGHT := import sys; sys.excepthook = lambda t, e, tb: print(e, file=sys.stderr); \
  from warden_local.pubsub import PubSubEmulator; PubSubEmulator(port=1).preflight()

# The suite drives real tools (headless Chromium, the Pub/Sub emulator): say how to install
# whatever is missing up front rather than as a failure deep in the test run.
check-tools: install
	@missing=0; \
	if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium (HTML report test)" >&2; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; fi; \
	if [ ! -x /usr/bin/chromium ]; then missing=1; \
	  echo "missing: /usr/bin/chromium (HTML report test). Install it with:" >&2; \
	  echo "  apt-get update && apt-get install -y chromium" >&2; fi; \
	if ! $(BIN)/python -c "$(PUBSUB_PREFLIGHT)" >/dev/null; then missing=1; \
	  echo "(needed by the event tests)" >&2; fi; \
	if ! command -v terraform >/dev/null; then missing=1; \
	  echo "missing: terraform >= 1.6 on PATH (fmt check and the config module test; no provider is needed)" >&2; fi; \
	if ! command -v npm >/dev/null; then missing=1; \
	  echo "missing: npm on PATH (fetches the provider schemas for the terraform schema check). Install it with:" >&2; \
	  echo "  apt-get update && apt-get install -y npm" >&2; fi; \
	exit $$missing

# mypy checks the warden package as pyproject.toml's [tool.mypy] says (strict for the typed core).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy --config-file pyproject.toml

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | sed '1i # Full lock of the test environment (transitive pins). Regenerate: make lock' > constraints.txt

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .venv-audit build .pytest_cache .ruff_cache .cache

bench-health: install
	$(BIN)/python bench/health.py

# Evidently needs pandas<3, so it gets a venv of its own; the benchmark runs from ours.
DRIFT_VENV := bench/.venv-drift
DRIFT_STAMP := $(DRIFT_VENV)/.installed

$(DRIFT_STAMP): bench/requirements-drift.txt
	$(PYTHON) -m venv $(DRIFT_VENV)
	$(DRIFT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements-drift.txt
	touch $(DRIFT_STAMP)

bench-drift: install $(DRIFT_STAMP)
	$(BIN)/python bench/drift.py

bench-router: install
	$(BIN)/python bench/router.py

bench-serving: install
	$(BIN)/python bench/serving.py

bench-scale: install
	$(BIN)/python bench/scale.py

# Regression guard (tests/regression, part of `make test`): prints the baseline diff old → new;
# CONFIRM=yes writes tests/regression/baseline.json. Only for an intended, understood metric
# change (a new estimator, a reviewed library upgrade), never to make a failing guard pass.
.PHONY: regression-baseline deps-check
regression-baseline: install
	$(BIN)/python tests/regression/refresh.py $(if $(filter yes,$(CONFIRM)),--yes)

# Dependency hygiene (docs/dependencies.md): known vulnerabilities in the pins (pip-audit, in a
# virtualenv of its own), then the pins that have newer releases. Non-zero only when the audit
# finds vulnerabilities or cannot audit (2: its vulnerability feed is unreachable); the
# outdated list is information.
AUDIT_VENV := .venv-audit
AUDIT_STAMP := $(AUDIT_VENV)/.installed

$(AUDIT_STAMP): requirements-audit.txt
	$(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-audit.txt
	touch $(AUDIT_STAMP)

deps-check: install $(AUDIT_STAMP)
	@audit=0; \
	$(BIN)/python -m warden_local.audit --pip-audit $(AUDIT_VENV)/bin/pip-audit \
	  requirements.txt constraints.txt || audit=$$?; \
	echo; \
	$(BIN)/python -m warden_local.outdated || exit $$?; \
	exit $$audit

# After bumping pins in requirements*.txt (docs/dependencies.md): resolve them afresh, without the
# old lock, into a new .venv and freeze that into constraints.txt. (`make lock` alone first
# reinstalls .venv against the old constraints.txt, which a bumped pin contradicts.)
.PHONY: relock
relock:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)
	$(MAKE) lock
