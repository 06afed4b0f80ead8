# Everything Quiver needs installs from here into .venv.
# The interpreter the virtualenv is made with: Debian's own python3 when it is 3.11 or newer and
# has venv (its interpreter has libpython linked in, where pyenv's default build loads it as a
# shared library: Quiver's Python code runs about a fifth faster), else python3 from PATH.
DEBIAN_PY := $(shell /usr/bin/python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo /usr/bin/python3)
PY ?= $(or $(DEBIAN_PY),python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser bench-tools demo test lint typecheck pytest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) browser

# Debian's Chromium for the GraphiQL browser test, installed with apt-get when it is missing.
browser:
	@test -x /usr/bin/chromium || sh scripts/install-chromium.sh

# wrk and hyperfine for the scripts in benchmarks/ (Debian's packages; needs root).
# benchmarks/graphql_bench.py installs PostGraphile itself, with npm, outside the repository.
bench-tools:
	@command -v wrk >/dev/null && command -v hyperfine >/dev/null || \
	  (apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq wrk hyperfine)

demo: $(STAMP)
	$(BIN)/quiver demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts
	$(BIN)/lint-imports

# mypy --strict over src, tests and benchmarks (the files of [tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
