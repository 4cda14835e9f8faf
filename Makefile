# hwgate — the two commands: `make run` and `make test`. Both set up what they
# need (Debian packages, .venv) idempotently and are quick when already done.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TESTBED_DIR ?= $(CURDIR)/.testbed
# Debian 13's time_t transition renamed swtpm's TCTI library (…t64); the rest of
# the list has the same names on Debian 12 and 13.
SWTPM_TCTI := $(shell . /etc/os-release 2>/dev/null; \
	[ "$${VERSION_ID%%.*}" -ge 13 ] 2>/dev/null && echo libtss2-tcti-swtpm0t64 || echo libtss2-tcti-swtpm0)
APT_PACKAGES := pcscd vsmartcard-vpcd softhsm2 opensc p11-kit libpcsclite-dev \
	libsystemd-dev pkg-config swig gcc python3-dev iproute2 util-linux \
	systemd chromium zbar-tools stress-ng \
	swtpm tpm2-abrmd libtpm2-pkcs11-1 libtss2-tcti-tabrmd0 $(SWTPM_TCTI) \
	dbus-daemon dbus-bin postgresql
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# `make help` lists every target with its ## description.
.PHONY: run test test-stress test-systemd dist lint protos protos-check protos-baseline bench fuzz setup system-deps venv wheelhouse pcscd clean

# The test bed brings itself up and execs hwgated on its config: the daemon
# itself only knows --config (it never imports the test bed).
run: setup ## set up, bring the test bed up, run hwgated on it in the foreground
	exec $(BIN)/hwgate-testbed run --dir $(TESTBED_DIR)

# As root the suite runs in TEST_WORKERS pytest-xdist workers (default 3: on 2 cores
# a third fills the time the others wait on pcscd, cards and daemons; measured 7 min
# 36 s with 3, 10 min 25 s with 2, same tree), each in its own mount + network namespace (testbed/isolated): every worker brings up its
# own private pcscd, vpcd readers, cards and token, so workers never share a reader,
# tests may kill and restart pcscd, and a host pcscd or another run's cards are
# never touched. Whole files go to one worker (--dist loadfile): a module's daemon
# starts once. TEST_WORKERS=1 runs serially in one namespace. Elsewhere (not root)
# the suite runs serially against the machine's pcscd.
TEST_WORKERS ?= 3
test: setup wheelhouse ## set up, then the whole pytest suite
	@if [ "$$(id -u)" = 0 ] && unshare -mn true 2>/dev/null; then \
		if [ "$(TEST_WORKERS)" -gt 1 ]; then \
			echo "running the suite in $(TEST_WORKERS) workers, each against its own private pcscd (testbed/isolated)"; \
			testbed/isolated $(BIN)/python -m pytest --dist loadfile \
				--tx "$(TEST_WORKERS)*popen//python=$(CURDIR)/testbed/isolated $(CURDIR)/$(BIN)/python" \
				$(PYTEST_ARGS); \
		else \
			echo "running the suite against a private pcscd (testbed/isolated)"; \
			testbed/isolated $(BIN)/python -m pytest -p no:xdist $(PYTEST_ARGS); \
		fi; \
	else \
		$(BIN)/python -m pytest -p no:xdist $(PYTEST_ARGS); \
	fi

# The suite under load: `make test` RUNS times (default 5) in random order, each
# beside `stress-ng --cpu 2`, stopping at the first failure. Every run's seed and
# result line are printed; replay one with
#   make test PYTEST_ARGS="-p randomly --randomly-seed=SEED"
# Deadlines inside the tests stretch by HWGATE_TEST_TIMEOUT_SCALE (default 3 here).
RUNS ?= 5
STRESS_CPUS ?= 2
STRESS_SCALE ?= 3
test-stress: setup ## `make test` RUNS times (default 5) beside stress-ng --cpu 2, random order
	@set -u; summary=""; \
	for run in $$(seq 1 $(RUNS)); do \
		log=$$(mktemp /tmp/hwgate-test-stress.XXXXXX); \
		stress-ng --cpu $(STRESS_CPUS) --timeout 0 --quiet & stress=$$!; \
		trap 'kill $$stress 2>/dev/null; wait $$stress 2>/dev/null' EXIT INT TERM; \
		HWGATE_TEST_TIMEOUT_SCALE=$(STRESS_SCALE) $(MAKE) --no-print-directory test \
			PYTEST_ARGS="-p randomly $(PYTEST_ARGS)" 2>&1 | tee $$log; \
		status=$${PIPESTATUS[0]}; \
		kill $$stress 2>/dev/null; wait $$stress 2>/dev/null; trap - EXIT INT TERM; \
		seed=$$(grep -o -m1 'randomly-seed=[0-9]*' $$log | cut -d= -f2); \
		result=$$(grep -E '^=+ .*(passed|failed|error).* =+$$' $$log | tail -1 | tr -d '='); \
		summary="$$summary\nrun $$run/$(RUNS): seed $$seed:$$result"; \
		rm -f $$log; \
		if [ $$status -ne 0 ]; then \
			echo -e "$$summary"; \
			echo "run $$run failed; replay: make test PYTEST_ARGS=\"-p randomly --randomly-seed=$$seed\""; \
			exit 1; \
		fi; \
	done; \
	echo -e "$$summary"; echo "all $(RUNS) runs passed under stress-ng --cpu $(STRESS_CPUS)"

setup: system-deps venv

system-deps: ## Debian packages the daemon and the test bed need (root)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Four distributions, one pyproject.toml each (see the top-level pyproject.toml),
# all installed editable, plus the top-level `dev` dependency group (pip >= 25.1).
PYPROJECTS := pyproject.toml clients/pyproject.toml daemon/pyproject.toml \
	testbed/pyproject.toml apps/pyproject.toml
EDITABLE := -e ./clients -e './daemon[systemd]' -e ./testbed -e './apps[demo,postgresql]'

venv: $(STAMP)

$(STAMP): $(PYPROJECTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install -q $(EDITABLE) --group dev
	touch $@

# Wheels of every third-party dependency, for tests/wheels: they install freshly
# built project wheels into clean venvs with --no-index, since the suite runs in
# a network namespace without network (testbed/isolated). Our own wheels are
# dropped here: the tests build them from the checkout.
WHEELHOUSE := $(VENV)/wheelhouse

wheelhouse: $(WHEELHOUSE)/.stamp

$(WHEELHOUSE)/.stamp: $(STAMP)
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip wheel -q --no-build-isolation -w $(WHEELHOUSE) ./clients './daemon[systemd]' ./testbed ./apps
	rm -f $(WHEELHOUSE)/hwgate*.whl
	touch $@

# What an install needs (docs/install.md): our wheels and sdists in dist/. The
# third-party wheels come from PyPI on the target host, or from the wheelhouse.
DIST := dist
dist: venv ## wheels and sdists of hwgate (client) and hwgated (daemon) in dist/
	rm -rf $(DIST)
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w $(DIST) ./clients ./daemon
	for d in clients daemon; do (cd $$d && $(CURDIR)/$(BIN)/python -c \
		'import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])' \
		$(CURDIR)/$(DIST) >/dev/null) || exit 1; done
	@ls $(DIST)

# hwgated under a real systemd, in a booted container per Debian release
# (systemd-nspawn --boot): Debian 12 (bookworm, systemd 252) and Debian 13
# (trixie, systemd 257, pcsc-lite 2.x behind polkit), installed by the steps of
# docs/install.md. Root file systems come from debootstrap through the Debian
# mirror apt already uses and are cached in .cache/systemd/SUITE/; Debian 13's
# Python 3.13 wheels (pyscard and systemd-python built there) come from PyPI
# once, cached beside it. In the Debian 13 container the card, PIV and HSM
# suites also run on Python 3.13 (tests/systemd/test_debian13_suite.py).
# SYSTEMD_SUITES picks releases, e.g. `make test-systemd SYSTEMD_SUITES=trixie`.
# Slow, so not part of `make test` (marker: systemd).
SYSTEMD_CACHE := $(CURDIR)/.cache/systemd
SYSTEMD_SUITES ?= bookworm trixie
comma := ,
empty :=
space := $(empty) $(empty)
test-systemd: setup wheelhouse dist ## hwgated.service in booted Debian 12 and 13 containers (slow)
	@command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null || { \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends debootstrap systemd-container; }
	for suite in $(SYSTEMD_SUITES); do \
		tests/systemd/make-rootfs $$suite $(SYSTEMD_CACHE)/$$suite/rootfs || exit 1; \
	done
	$(if $(filter trixie,$(SYSTEMD_SUITES)),tests/systemd/make-wheelhouse \
		$(SYSTEMD_CACHE)/trixie/rootfs $(SYSTEMD_CACHE)/trixie/wheelhouse)
	HWGATE_SYSTEMD_CACHE=$(SYSTEMD_CACHE) HWGATE_DIST=$(CURDIR)/$(DIST) \
		HWGATE_SYSTEMD_SUITES=$(subst $(space),$(comma),$(strip $(SYSTEMD_SUITES))) \
		HWGATE_WHEELHOUSE=$(CURDIR)/$(WHEELHOUSE) \
		$(BIN)/python -m pytest -p no:cacheprovider -m systemd tests/systemd $(PYTEST_ARGS)

# googleapis .proto files (google/rpc, google/type) come from the installed
# googleapis-common-protos package: no network, nothing vendored.
GOOGLEAPIS_PROTOS = $(shell $(BIN)/python -c 'import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))')

protos: venv ## regenerate clients/hwgate/v1 from protos/
	rm -f clients/hwgate/v1/*_pb2*.py clients/hwgate/v1/*_pb2*.pyi
	$(BIN)/python -m grpc_tools.protoc -I protos -I $(GOOGLEAPIS_PROTOS) \
		--python_out=clients --pyi_out=clients --grpc_python_out=clients \
		protos/hwgate/v1/*.proto
	touch clients/hwgate/v1/py.typed

# hwgate.v1 is stable: `make lint` runs buf breaking against this committed
# descriptor set (protos/buf-check says how, offline). A deliberate break of v1
# rewrites it in the same commit with `make protos-baseline`.
protos-baseline: venv ## deliberately rewrite the v1 baseline protos/hwgate-v1.binpb (buf breaking)
	protos/buf-check baseline

protos-check: protos ## fail if the committed stubs differ from a fresh generation
	git diff --exit-code -- clients/hwgate/v1 || { echo "generated stubs are stale: run make protos"; exit 1; }
	test -z "$$(git status --porcelain -- clients/hwgate/v1)" || { git status --porcelain -- clients/hwgate/v1; echo "untracked generated files"; exit 1; }

LINT_DIRS := daemon clients testbed apps tests bench

lint: setup ## ruff, mypy, import contracts, buf lint, buf breaking (v1 baseline), stub drift
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo
	protos/buf-check lint
	protos/buf-check breaking
	$(MAKE) --no-print-directory protos-check

# BENCH=name[,name] runs only those benchmarks (e.g. BENCH=unary: the per-call
# cost vs a bare grpc.aio server, a minute) and merges them into BENCHMARKS.md.
BENCH ?=
bench: setup ## every benchmark, side by side with its baseline (private pcscd as root; BENCH=unary,...)
	@if [ "$$(id -u)" = 0 ] && unshare -mn true 2>/dev/null; then \
		testbed/isolated $(BIN)/python -m bench $(if $(BENCH),--only $(BENCH)); \
	else \
		$(BIN)/python -m bench $(if $(BENCH),--only $(BENCH)); \
	fi

.PHONY: soak
SOAK_SECONDS ?= 60
soak: setup ## 50 mixed clients + card churn for SOAK_SECONDS (default 60); fails on errors/leaks
	@if [ "$$(id -u)" = 0 ] && unshare -mn true 2>/dev/null; then \
		testbed/isolated $(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS); \
	else \
		$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS); \
	fi

# The RPC storm target starts a daemon on the test bed: private pcscd as root, like `test`.
fuzz: setup ## long property-based run of every parser (HYPOTHESIS_PROFILE=fuzz, >=100k cases)
	@if [ "$$(id -u)" = 0 ] && unshare -mn true 2>/dev/null; then \
		HYPOTHESIS_PROFILE=fuzz testbed/isolated $(BIN)/python -m pytest -m fuzz -p no:cacheprovider tests/fuzz $(PYTEST_ARGS); \
	else \
		HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -m fuzz -p no:cacheprovider tests/fuzz $(PYTEST_ARGS); \
	fi

# Reference apps (apps/hwgate_apps): the SP 800-157 derived-credential flow.
# `demo` drives the kiosk page in headless Chromium (Debian chromium, never a
# downloaded browser) and saves the QR screen beside the test bed's files
# (DIR/kiosk-*.png, ignored by git); `demo-screenshot` refreshes the tracked
# docs/kiosk-*.png on purpose. As root both run against a private pcscd like `test`.
# `kiosk` serves the same stack for a person (http://127.0.0.1:8080; it prints how
# to insert cards); it exits 1 with the reason when its own hwgated cannot start
# (e.g. `make run` already serves the same test bed).
.PHONY: demo demo-screenshot kiosk help
DEMO_SCREENSHOT ?=
demo: setup ## hwgated + enrollment server + kiosk, driven end to end in headless Chromium
	@if [ "$$(id -u)" = 0 ] && unshare -mn true 2>/dev/null; then \
		testbed/isolated $(BIN)/python -m hwgate_apps.demo --dir $(TESTBED_DIR)/demo $(if $(DEMO_SCREENSHOT),--screenshot $(DEMO_SCREENSHOT)); \
	else \
		$(BIN)/python -m hwgate_apps.demo --dir $(TESTBED_DIR) $(if $(DEMO_SCREENSHOT),--screenshot $(DEMO_SCREENSHOT)); \
	fi

demo-screenshot: ## `make demo`, refreshing the tracked docs/kiosk-*.png
	@$(MAKE) --no-print-directory demo DEMO_SCREENSHOT=$(CURDIR)/docs/kiosk-qr.png

# As root, `kiosk` runs in a private namespace like `demo` (hwgate_apps.kiosk_isolated):
# only the kiosk page's port is bound on the host; it prints the nsenter commands
# that insert and remove cards inside.
kiosk: setup ## the same services, left running for a person to click through
	@if [ "$$(id -u)" = 0 ] && unshare -mn true 2>/dev/null; then \
		exec $(BIN)/python -m hwgate_apps.kiosk_isolated --dir $(TESTBED_DIR)/kiosk; \
	else \
		exec $(BIN)/python -m hwgate_apps.demo --interactive --dir $(TESTBED_DIR); \
	fi

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	rm -rf clients/build daemon/build testbed/build apps/build */*.egg-info
