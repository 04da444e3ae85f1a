# SPMP developer entry points. The two that matter on a fresh Debian 12 machine:
#
#   make demo    set everything up, then run the demo
#   make test    set everything up, then lint, type-check and run the test suite
#
# Both create .venv (Python 3.11+) when missing, install SPMP with its dev extras when
# pyproject.toml changed, and install the Debian packages in scripts/debian-packages.txt
# (through scripts/setup-debian.sh) when any is missing. `make help` lists every target.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
export PYTHON VENV

.PHONY: help setup debian venv demo test lint format typecheck pytest bench docs clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: debian venv ## install Debian packages and the venv (what demo and test do first)

debian: ## install missing Debian packages listed in scripts/debian-packages.txt
	@bash scripts/setup-debian.sh

venv: ## create .venv and pip install -e '.[dev]' when pyproject.toml changed
	@bash scripts/setup-venv.sh

demo: setup ## run the demo: 3 simulated sites, bootstrap + management server + API on loopback (Ctrl-C stops)
	$(BIN)/spmp demo

test: setup ## ruff check, ruff format --check, mypy, then pytest (all run; fails if any fails)
	@bash scripts/run-checks.sh $(PYTEST_ARGS)

lint: venv ## ruff check and ruff format --check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: venv ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

typecheck: venv ## mypy (strict on src, see pyproject.toml)
	$(BIN)/mypy

pytest: setup ## only the test suite
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup ## run every benchmarks/bench_*.py
	@shopt -s nullglob; files=(benchmarks/bench_*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no benchmarks yet (benchmarks/bench_*.py)"; exit 0; fi; \
	for f in "$${files[@]}"; do echo "==> $$f"; $(BIN)/python "$$f"; done

docs: venv ## regenerate generated docs (docs/objects.md)
	$(BIN)/spmp objects --markdown > docs/objects.md.tmp
	mv docs/objects.md.tmp docs/objects.md
	@echo "wrote docs/objects.md"

clean: ## remove caches and build output (keeps .venv)
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis htmlcov .coverage docs/objects.md.tmp
	find src tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} +
	find src -maxdepth 1 -name '*.egg-info' -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
