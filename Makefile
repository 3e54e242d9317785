# svrchain: `make demo` shows the chain on the built-in lab; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FAB := $(VENV)/bin/fab
WEB ?= 2
# How the lab hosts boot: sysv (Debian, insserv), chkconfig (RHEL-like SysV, chkconfig 1.33), systemd.
INIT ?= sysv
# Debian packages the lab and the tests need on this machine (the lab hosts get theirs by debootstrap).
DEBS := debootstrap iproute2 util-linux openssh-client shellcheck curl systemd-container

.PHONY: install lab-up lab-down demo test unit fuzz mutation lint modules bench clean

install: $(VENV)/.installed
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

lab-up: install
	$(PY) -m lab up --web $(WEB) --init $(INIT)

lab-down:
	$(PY) -m lab down

demo: install
	$(PY) -m lab.demo --web $(WEB)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

unit: install
	$(PY) -m pytest -m "not lab"

# The property tests with new random examples (make test draws the same ones every run).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -m "not lab" tests/unit/test_fuzz.py tests/unit/test_shell_values.py

# Mutation testing of the pure modules (mutmut, set up in pyproject.toml) with the unit tests only; not part
# of make test. Results are kept in mutants/ (a later run checks only what changed); the summary, per
# module, goes to mutants/summary.txt, and the target fails under MUTATION_MIN percent killed.
MUTATION_JOBS ?= $(shell nproc)
MUTATION_MIN ?= 90
mutation: install
	$(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) >mutants.log 2>&1 || { tail -n 40 mutants.log; exit 1; }
	$(PY) tests/mutation_summary.py --min $(MUTATION_MIN) --out mutants/summary.txt

bench: install
	$(PY) -m bench.run $(if $(N),--n $(N))

# Redraw docs/modules.md (the layers and imports) from the code.
modules: install
	$(PY) -m tests.unit.test_layers

lint: install
	$(PY) -m ruff check .

clean: lab-down
	rm -rf $(VENV) .lab mutants mutants.log
