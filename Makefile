# agfs-fuse: quick start is `make demo` and `make test` on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEBS   := fuse3 libfuse3-dev pkg-config

.PHONY: install system-deps test lint soak conformance bench demo demo-stop install-systemd clean

install: system-deps $(STAMP)

# Debian packages pyfuse3 needs to build and fusermount3 to mount; apt only when missing.
system-deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages: $$missing (run: sudo apt-get install $$missing)"; exit 1; fi; \
	  echo "installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 needed"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check agfs_fuse tests bench
	$(BIN)/mypy

test: install lint
	$(BIN)/pytest

# The long endurance runs (minutes); `make test` runs their short versions.
soak: install
	$(BIN)/pytest -o addopts="-ra" -m soak

# The suites that talk to a server, against the real Go AGFS server instead of the reference
# (build it with ../shared/realagfs/README.md); tests marked reference_only are skipped.
# A missing binary is one error line from pytest (tests/conftest.py).
AGFS_SERVER_BIN ?= $(HOME)/.cache/agfs-real/agfs-server
CONFORMANCE_SUITES := tests/mount tests/faults tests/integration tests/access tests/stress tests/server tests/federation
conformance: install
	$(BIN)/pytest --agfs-server-bin="$(AGFS_SERVER_BIN)" $(CONFORMANCE_SUITES) $(PYTEST_ARGS)

# Not a test: agfs-fuse against curl, sshfs and rclone mount in one run (installs them with
# apt when missing); the table goes to stdout, JSON and a PNG chart to bench/results/.
# BENCH_ARGS="--wan" runs them over an imitated WAN link instead (RTT 0, 2 and 10 ms through a
# delay relay); narrow it with e.g. BENCH_ARGS="--wan --rtt 10 --only tar,small --reps 1".
bench: install
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

demo: install
	@bash scripts/demo.sh start

demo-stop:
	@bash scripts/demo.sh stop

# Root only: a venv under /opt/agfs-fuse, agfs-fuse in /usr/local/bin, the systemd units
# and /sbin/mount.fuse.agfs.
install-systemd: system-deps
	@PYTHON=$(PYTHON) bash scripts/install-systemd.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo *.egg-info
