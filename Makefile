# Set-up is two commands on a fresh machine with Python 3.11+ and make: `make demo`, `make test`.
# Each creates .venv when it is missing and installs the project (and its dev extra) into it.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# make test runs the tests on pytest-xdist workers, one per core ("auto"); PYTEST_WORKERS=0 runs them
# serially in one process. --dist loadfile keeps each file on one worker (module-scoped moto servers,
# the runbooks' embedded AWS); tests/conftest.py starts tests/test_policy_coverage.py after all others.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: demo test test-fast test-pyarrow-min lint docs build bench chaos mutation clean tf-init tf-plan tf-apply

$(STAMP): setup.cfg pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed (python3.11, python3.12, ...): install it, or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eltops demo

# checkov (Terraform static analysis) lives in its own venv: its pins must not move the project's.
CHECKOV_STAMP := .venv-checkov/.installed-stamp
$(CHECKOV_STAMP):
	@test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet 'checkov>=3.2'
	@touch $(CHECKOV_STAMP)

test: $(STAMP) $(CHECKOV_STAMP)
	ELT_REQUIRE_CHECKOV=1 $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not e2e" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check lambdas ops tests bench scripts

# docs/eltops.md's command reference is the CLI's --help (tests/unit/test_docs.py checks it)
docs: $(STAMP)
	$(BIN)/python scripts/eltops_reference.py

build: $(STAMP)
	$(BIN)/python scripts/build_lambdas.py dist

# Fault injection: longer seeded runs than make test's; ends with
# "faults injected: N, objects: M, lost: 0, duplicated: 0" and fails when lost or duplicated is not 0.
CHAOS_ARGS ?= --rounds 3 --objects 40 --poison 3
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

# Mutation testing (mutmut 3), MUTATION_JOBS modules at a time against their focused tests, at the
# lowest priority; not part of make test. MUTATION_ARGS: module paths, --reuse, --min-score N.
# Prints a table (module, mutants, killed, equivalent, survived, score, wall, mutants/s, a total)
# and each surviving mutant.
MUTATION_ARGS ?=
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	nice -n 19 $(BIN)/python scripts/mutation.py --jobs $(MUTATION_JOBS) $(MUTATION_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/transform.py --mb 100 --rss-large-mb 1000
	$(BIN)/python bench/transform.py --mb 100 --bad-ratio 0.01

# The tf-* targets run terraform where it is installed (>= 1.10; make test also plans and applies a copy
# against the embedded AWS where a provider mirror exists: tests/e2e/test_terraform_apply.py).
TF_DIR := infra/terraform/envs/dev
TF := $(shell command -v terraform 2>/dev/null)
TF_MISSING := echo "terraform is not installed: see https://developer.hashicorp.com/terraform/install (>= 1.10), then run make again"; exit 1

tf-init:
	@test -n "$(TF)" || { $(TF_MISSING); }
	cd $(TF_DIR) && terraform init -backend-config=backend/backend.hcl

tf-plan: build
	@test -n "$(TF)" || { $(TF_MISSING); }
	cd $(TF_DIR) && terraform plan -var-file=dev.tfvars -out=tfplan

tf-apply: build
	@test -n "$(TF)" || { $(TF_MISSING); }
	cd $(TF_DIR) && terraform apply -var-file=dev.tfvars $(if $(filter 1,$(TF_AUTO_APPROVE)),-auto-approve,)

clean:
	rm -rf dist build *.egg-info .pytest_cache .ruff_cache .mutation mutants

# The transform's oldest supported pyarrow (AWS SDK for pandas layers ship older ones than PyPI).
PYARROW_MIN := 14.0.2
test-pyarrow-min: $(STAMP)
	@test -x .venv-pyarrow-min/bin/python || $(PYTHON) -m venv .venv-pyarrow-min
	.venv-pyarrow-min/bin/python -m pip install --quiet 'pyarrow==$(PYARROW_MIN)' 'numpy<2' boto3 'moto[server]' pytest click tenacity tqdm python-dateutil
	.venv-pyarrow-min/bin/python -c "import pyarrow; assert pyarrow.__version__ == '$(PYARROW_MIN)', pyarrow.__version__"
	cd $(CURDIR) && .venv-pyarrow-min/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_arrow_read.py tests/unit/test_sinks.py tests/unit/test_transform_core.py tests/unit/test_transform_hostile.py tests/unit/test_transform_empty_floods.py tests/functional/test_transform_handler.py
