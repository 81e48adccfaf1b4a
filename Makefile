# Every target that runs code first makes sure .venv exists and holds the project,
# so a fresh clone needs nothing but `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo plan typecheck venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory typecheck

# infra/ and policy/ each have a __main__.py (Pulumi entry points), so they are checked
# one at a time. A misspelt pulumi_aws argument fails here.
typecheck: $(STAMP)
	$(BIN)/python -m mypy infra
	$(BIN)/python -m mypy policy

plan: $(STAMP)
	$(BIN)/python scripts/plan --update

demo: $(STAMP)
	$(BIN)/python scripts/plan

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache
