# Meltemi: `make up` runs the platform, `make test` runs the suite. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: the broker, its CLI clients (test witnesses), InfluxDB 1.x and its CLI,
# Chromium for the dashboard's browser tests, nginx (the edge proxy of deploy/, tested as
# shipped), openssl (the tests' throw-away CA, and the TLS witness s_client) and iproute2 (ss).
APT_PACKAGES := mosquitto mosquitto-clients influxdb influxdb-client chromium nginx openssl iproute2
# The dashboard's scripts offline (issue 12): DejaVu covers Greek, Latin, Cyrillic, Georgian,
# Arabic and Persian, Nafees (Naskh) Urdu; fontconfig gives them to Chromium. curl is a witness
# client.
APT_PACKAGES += fonts-dejavu-core fonts-nafees curl
# Node and npm install axe-core for the accessibility tests (tests/axe, npm ci). They are
# installed from Debian only when the commands are missing: a machine may already have a
# Node.js of its own (e.g. NodeSource's, which bundles npm and conflicts with Debian's npm).
NODE_PACKAGES := nodejs npm

.PHONY: up test lint pytest deps venv bench clean help

help:
	@echo "make up      run the whole platform in the foreground (Ctrl-C stops it)"
	@echo "make test    lint and run the whole test suite against real Mosquitto and InfluxDB"
	@echo "make bench   run the benchmarks in bench/"

up: deps venv
	$(VENV)/bin/meltemi up

test: deps venv lint pytest

pytest:
	$(VENV)/bin/pytest -p no:cacheprovider

lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Install the Debian packages that are missing. Debian starts mosquitto, influxdb and nginx as
# system services on install; when this target installs them, it stops and disables those
# services so that they do not hold ports 1883/8086/80 (Meltemi runs its own instances under
# MELTEMI_DATA_DIR, the tests their own nginx). Without systemd (containers, CI), the package
# scripts start them through /etc/init.d unless a policy-rc.d forbids it: stop them there too.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then missing="$$missing python3-venv"; fi; \
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing="$$missing $(NODE_PACKAGES)"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing && \
	  for s in mosquitto influxdb nginx; do case "$$missing " in *" $$s "*) \
	    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
	      $(SUDO) systemctl disable --now $$s || true; \
	    elif [ -x /etc/init.d/$$s ]; then \
	      $(SUDO) /etc/init.d/$$s stop || true; $(SUDO) update-rc.d $$s disable || true; \
	    fi;; esac; \
	  done; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

bench: deps venv
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache tests/axe/node_modules
