# Every target that runs code first makes sure .venv exists and holds the project,
# so a fresh clone needs nothing but `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo plan typecheck venv clean

# The local emulator authorises requests with @cloud-copilot/iam-simulate (Node.js), installed from
# its lock file into recovery/local/evaluator/node_modules.
EVALUATOR := recovery/local/evaluator

$(STAMP): pyproject.toml $(EVALUATOR)/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -e '.[dev]'
	npm ci --prefix $(EVALUATOR) --no-audit --no-fund --loglevel=error
	touch $(STAMP)

venv: $(STAMP)

# One worker per core. --dist loadfile keeps a test file on one worker, so its module fixtures
# (a whole local environment for some) start once, not once per worker.
# The suite backs the local cache group with a real redis-server: installed first if missing.
test: $(STAMP)
	scripts/ensure-redis-server
	$(BIN)/python -m pytest -q -n auto --dist loadfile
	$(MAKE) --no-print-directory typecheck

# infra/ and policy/ each have a __main__.py (Pulumi entry points), so they are checked
# one at a time. A misspelt pulumi_aws argument fails here.
typecheck: $(STAMP)
	$(BIN)/python -m mypy infra
	$(BIN)/python -m mypy policy

plan: $(STAMP)
	$(BIN)/python scripts/plan --update

# One full DR drill on the embedded local environment (no AWS account, no network): start it, inject
# each disaster, recover, print the RTO/RPO table and the report's path, and ALWAYS stop it again.
# Exits with the drill's code. The offline plan of the real stacks is `make plan` / `scripts/plan`.
DEMO_DIR    := $(CURDIR)/.recovery/demo
REPORT_DIR  := $(CURDIR)/.recovery/reports

demo: $(STAMP)
	@export RECOVERY_LOCAL_DIR='$(DEMO_DIR)'; \
	trap 'exit 130' INT TERM; \
	trap '$(BIN)/recovery local down >/dev/null 2>&1 || true' EXIT; \
	$(BIN)/recovery local down >/dev/null 2>&1 || true; \
	$(BIN)/recovery local up >/dev/null || exit $$?; \
	$(BIN)/recovery drill full --stack local --report-dir '$(REPORT_DIR)'; rc=$$?; \
	echo; \
	$(BIN)/recovery local down; \
	exit $$rc

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache $(EVALUATOR)/node_modules

# Benchmarks of issues 8 and 17 (not part of `make test`: these machines are noisy). Writes
# docs/benchmarks.md and docs/benchmarks.json; data is generated once into bench/.data/.
# awscli 1.x (the plan's `aws s3 cp`) is pinned to the botocore already in .venv, so boto3 is
# untouched; psutil measures the process tree. BENCH_ARGS="--sizes 250M --runs 1" for a quick look.
.PHONY: bench
bench: $(STAMP)
	test -x $(BIN)/aws || $(BIN)/python -m pip install -qq awscli "botocore==$$($(BIN)/python -c 'import botocore; print(botocore.__version__)')"
	$(BIN)/python -c 'import psutil' 2>/dev/null || $(BIN)/python -m pip install -qq psutil
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench $(BENCH_ARGS)
