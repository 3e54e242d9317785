# svrchain: `make demo` shows the chain on the built-in lab; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
PY := $(VENV)/bin/python
FAB := $(VENV)/bin/fab
WEB ?= 2
# How the lab hosts boot: sysv (Debian, insserv), chkconfig (RHEL-like SysV, chkconfig 1.33), systemd.
INIT ?= sysv
# The web hosts: full (Apache + PHP, booted by init; the default) or light (sshd + a stand-in web server,
# up to 200 of them: the scale bench's).
KIND ?= full
# The DB host: postgres (PostgreSQL behind the lab's dbora) or oracle (Oracle-shaped stand-ins over PostgreSQL).
DB ?= postgres
# Debian packages the lab and the tests need on this machine (the lab hosts get theirs by debootstrap);
# only the lab's targets install them (as root). Running the tasks needs none of them.
DEBS := debootstrap iproute2 util-linux openssh-client shellcheck strace curl systemd-container

.PHONY: install lab-deps lab-up lab-down demo test unit coverage fuzz mutation lint modules bench lock clean

# The tool, its tests' and bench's Python packages at the locked versions, in .venv: no root, no apt.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	@# setuptools notes every editable install ("Editable installation ... be careful"): a note, not a
	@# problem of svrchain's; its real warnings (package data) are checked by tests/unit/test_install.py.
	PYTHONWARNINGS=ignore $(PY) -m pip install -q --no-deps -e .
	touch $@

# The Debian packages of the lab and the tests (root, apt): lab-up, demo and test depend on it.
lab-deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "lab-deps: run as root to install $$missing" >&2; exit 1; fi; \
		echo "installing Debian packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# requirements.lock from pyproject.toml's ranges, resolved afresh in a temporary venv.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q -e '.[dev,bench]'
	{ sed -n '1,3p' requirements.lock; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^svrchain'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

lab-up: lab-deps install
	$(PY) -m lab up --web $(WEB) --init $(INIT) --kind $(KIND) --db $(DB)

lab-down:
	$(PY) -m lab down

demo: lab-deps install
	$(PY) -m lab.demo --web $(WEB)

# The tests in two groups at once (tests/lab_parallel.py): the lab's tests split between two labs, each in a
# slot of LAB_SLOTS (its own network namespace svrctlN, host namespaces and disks, all removed and checked
# gone afterwards), and the tests without the lab on UNIT_JOBS processes first in the group with less lab
# time; every run goes to its end, and any failing fails make test. LAB_SLOTS="3": one group, one lab.
LAB_SLOTS ?= 1 2
test: lab-deps install $(TOOLS)/.installed
	$(PY) -m ruff check .
	$(PY) -m tests.lab_parallel --unit $(UNIT_JOBS) $(LAB_SLOTS)

# The fast loop: every test that needs neither the lab nor a fresh install (make test runs them all), on
# UNIT_JOBS processes (pytest-xdist; UNIT_JOBS=0: in this one). Python's bytecode and pytest's rewritten
# test modules are cached (__pycache__, ignored by git) even where PYTHONDONTWRITEBYTECODE is set: without
# the cache every run, and every fab or python the tests start, compiles them all again. --dist worksteal:
# a process that has run out of tests takes half of the other's (xdist's default hands tests out in
# chunks: the last chunk, often a module of real programs and their waits, ran alone for 5-8 s). Only
# tests/unit is collected (each process imported every lab module and its conftest to deselect them).
UNIT_JOBS ?= 2
UNIT_DIST := --dist worksteal
unit: install
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -n $(UNIT_JOBS) $(UNIT_DIST) -m "not lab and not install" tests/unit

# make unit's tests with the coverage of svrchain/ (pytest-cov), per module; fails under COVERAGE_MIN
# percent. Not part of make test (it costs make unit's time again).
COVERAGE_MIN ?= 90
coverage: install
	$(PY) -m pytest -q -n $(UNIT_JOBS) $(UNIT_DIST) -m "not lab and not install" tests/unit --cov=svrchain --cov-report=term \
		--cov-fail-under=$(COVERAGE_MIN)

# The property tests with new random examples (make test draws the same ones every run).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -m "not lab" tests/unit/test_fuzz.py tests/unit/test_shell_values.py

# Mutation testing of the pure modules (mutmut, set up in pyproject.toml) with the unit tests only; not part
# of make test. Results are kept in mutants/ (a later run checks only what changed); the summary, per
# module, goes to mutants/summary.txt, and the target fails under MUTATION_MIN percent killed. It runs at
# the lowest priority (nice 19). MODULE=svrchain/core/webtier.py (or several, space-separated) checks
# those modules' mutants again, all of them, and judges only those modules: on a shared 2-core machine,
# one module at a time (docs/testing.md gives each one's time).
MUTATION_JOBS ?= $(shell nproc)
MUTATION_MIN ?= 90
MODULE ?=
# svrchain/facts/__init__.py -> svrchain.facts.x*, svrchain/core/webtier.py -> svrchain.core.webtier.x*
mutant_glob = '$(subst /,.,$(patsubst %.py,%,$(patsubst %/__init__.py,%,$(1)))).x*'
mutation: install
	@# mutmut copies svrchain/'s other files (the trigger program, the templates) once, into a fresh
	@# mutants/ only: a later run would test the mutants against stale copies of them. Refresh them.
	if [ -d mutants/svrchain ]; then cd svrchain && find . -type f ! -name '*.py' ! -path '*/__pycache__/*' \
		-exec cp -p --parents {} ../mutants/svrchain/ \; ; fi
	nice -n 19 $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(foreach m,$(MODULE),$(call mutant_glob,$(m))) \
		>mutants.log 2>&1 || { tail -n 40 mutants.log; exit 1; }
	$(PY) tests/mutation_summary.py --min $(MUTATION_MIN) --out mutants/summary.txt $(foreach m,$(MODULE),--module $(m))

# make bench: full lab hosts, N = 1 4 8 16. make bench SCALE=1: 1 DB + N light web hosts (N = 1 10 50
# 100 200), with the same bootstrap as a pyinfra deploy and an Ansible playbook from .venv-tools.
bench: install $(if $(SCALE),$(TOOLS)/.installed)
	@# The command's own bytecode, as an installed (non-editable) svrchain has it: the svrchain command,
	@# like fab, never writes it (Invoke sets sys.dont_write_bytecode), so a checkout would compile its
	@# modules again on every run (about 0.1 s of a no-op).
	PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q svrchain tasks
	$(PY) -m bench.$(if $(SCALE),scale,run) $(if $(N),--n $(N))

# The tools the scale bench compares with, pinned, in their own environment (not svrchain's).
$(TOOLS)/.installed: bench/requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --upgrade pip
	$(TOOLS)/bin/python -m pip install -q -r bench/requirements-tools.txt
	touch $@

# Redraw docs/modules.md (the layers and imports) from the code.
modules: install
	$(PY) -m tests.unit.test_layers

lint: install
	$(PY) -m ruff check .

clean: lab-down
	rm -rf $(VENV) $(TOOLS) .lab mutants mutants.log
