# kaip: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kaip-installed

.PHONY: demo setup test test-fast lint typecheck layers unit venv clean bench-serving

LOCK := requirements.lock

# Every install takes its versions from the lock (make lock writes it from pyproject's ranges).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) pip
	$(BIN)/python -m pip install -q -c $(LOCK) --build-constraint $(LOCK) -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

# mypy's incremental cache is shared by every checkout (it checks each file's hash, so a fresh
# clone of the same code is checked in seconds, not a minute); KAIP_MYPY_CACHE moves it.
MYPY_CACHE ?= $(or $(KAIP_MYPY_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kaip-mypy)

typecheck: $(STAMP)
	$(BIN)/mypy --cache-dir "$(MYPY_CACHE)"

layers: $(STAMP)
	$(BIN)/lint-imports

# What the tests need besides the virtualenv: Debian packages, helm, the Kubernetes test control
# plane (tools/setup.sh; components in tools/setup.d/). Idempotent: seconds when all is there.
setup: $(STAMP)
	tools/setup.sh

# Two phases, both always run: the tests that judge latency (marker quiet_machine) alone; then
# every other test on TEST_WORKERS pytest-xdist workers, each test file on one worker (each
# Kubernetes tier whole on one), the longest tiers first (tests/conftest.py). Most tests wait on
# processes, so workers outnumber cores.
# Each phase ends with its slowest tests (--durations), so a CI log says where the time went.
TEST_WORKERS ?= 4
ALONE := quiet_machine
define run_tests
rc=0; \
$(BIN)/python -m pytest -m "$(ALONE)$(1)" --durations=30 || rc=$$?; \
$(BIN)/python -m pytest -m "not $(ALONE)$(1)" -n $(TEST_WORKERS) --durations=40 || rc=$$?; \
exit $$rc
endef

test: setup lint typecheck layers
	$(call run_tests,)

# The inner loop: every tier but the Kubernetes ones, nothing built for them. `make test` is
# what must pass; `pytest -m unit` (or contract, e2e_local, e2e_kube) runs one tier.
test-fast: export KAIP_SKIP_KUBE = 1
test-fast: setup lint typecheck layers
	$(call run_tests, and not e2e_kube and not e2e_node)

# Fresh clone to a served model: train it, run `kaip up` in the background, call it, show how.
# It keeps running; `.venv/bin/kaip down` stops it (CI runs `make test`, never this).
demo: $(STAMP)
	$(BIN)/kaip validate examples/
	$(BIN)/python examples/quickstart/train.py
	@$(BIN)/kaip down >/dev/null
	$(BIN)/kaip up examples/quickstart --detach
	$(BIN)/python examples/quickstart/predict.py

# kaip's model server against MLServer, KServe, BentoML and Ray Serve (bench/README.md).
# Not part of `make test`. QUICK=1: one short round (smoke); SERVERS=kaip,kserve: a subset.
bench-serving: $(STAMP)
	bench/serving/setup.sh
	$(BIN)/python bench/serving/run.py $(if $(QUICK),--quick) $(if $(SERVERS),--servers $(SERVERS))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The chart's CRDs are generated from the spec models; tests/unit/test_chart_crds.py checks they are current.
.PHONY: chart-crds
chart-crds: $(STAMP)
	@mkdir -p charts/kaip/crds
	$(BIN)/kaip crd > charts/kaip/crds/kaip.dev.yaml

# A real Kubernetes control plane on loopback (tools/k8s, tests/e2e_kube/kube_harness.py).
.PHONY: k8s-build k8s-up k8s-down
k8s-build:
	tools/k8s/build.sh

# NODE=real adds a real node (tests/e2e_node): kubelet, containerd, CNI, kube-proxy, kaip's images.
k8s-up: $(STAMP) k8s-build
ifeq ($(NODE),real)
	tools/registry/build.sh >/dev/null
	tools/images/build.sh >/dev/null
	$(BIN)/python tests/e2e_node/node_harness.py up --dir .kaip/k8s
else
	$(BIN)/python tests/e2e_kube/kube_harness.py up --dir .kaip/k8s
endif

k8s-down: $(STAMP)
	$(BIN)/python tests/e2e_node/node_harness.py down --dir .kaip/k8s
	$(BIN)/python tests/e2e_kube/kube_harness.py down --dir .kaip/k8s

# kaip's OCI images without a Docker engine (tools/images/README.md): rebuilt only when changed.
.PHONY: images
images:
	tools/images/build.sh

# The local gateway: overhead against a direct replica, and scale-from-zero first-request latency.
.PHONY: bench-gateway
bench-gateway: $(STAMP)
	$(BIN)/python bench/gateway/run.py $(if $(QUICK),--rounds 1 --duration 3 --quiet-cpu 1)
	$(BIN)/python bench/gateway/cold.py $(if $(QUICK),--runs 1)

# Pin again after changing dependencies in pyproject.toml or bench/serving/peers/*/requirements.txt
# (tests/unit/test_lock.py fails until you do). UPGRADE=1 moves every pin to the newest allowed.
.PHONY: lock
lock:
	@test -x $(BIN)/uv || $(MAKE) --no-print-directory venv
	$(BIN)/python tools/lock.py $(if $(UPGRADE),--upgrade)
