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
# Debian packages the lab and the tests need on this machine (the lab hosts get theirs by debootstrap).
DEBS := debootstrap iproute2 util-linux openssh-client shellcheck curl systemd-container

.PHONY: install lab-up lab-down demo test unit fuzz lint modules bench clean

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
	$(PY) -m lab up --web $(WEB) --init $(INIT) --kind $(KIND)

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

# make bench: full lab hosts, N = 1 4 8 16. make bench SCALE=1: 1 DB + N light web hosts (N = 1 10 50
# 100 200), with the same bootstrap as a pyinfra deploy and an Ansible playbook from .venv-tools.
bench: install $(if $(SCALE),$(TOOLS)/.installed)
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
	rm -rf $(VENV) $(TOOLS) .lab
