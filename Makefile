# tokenscale: `make help` lists the targets. Python runs from .venv (uv), the cluster binaries from
# ~/.cache/tokenscale/bin/<pins>/ (built once by tools/build-cluster-bins.sh).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
RUN := $(VENV)/bin
PYTEST_ARGS ?=
# Go for `make cluster-bins` where it is installed but not on PATH (the official tarball's place); a Go already
# on PATH comes first.
export PATH := $(PATH):/usr/local/go/bin

# Demo knobs: make demo TRACE=azure-code POLICY=tokenscale SPEEDUP=4 DURATION=120
TRACE ?= azure-code
POLICY ?= tokenscale
SPEEDUP ?= 4
DURATION ?= 120

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	python3 -m pip install --user --quiet uv==0.13.8

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv with the package (editable) and the dev tools

.PHONY: cluster-bins
cluster-bins: ## Build etcd, kube-*, kubectl, kwok and helm from the pinned Go modules (cached, once)
	bash tools/build-cluster-bins.sh

.PHONY: lint
lint: install ## ruff, mypy --strict and the import-linter layer contracts
	$(RUN)/ruff check operator tests
	$(RUN)/ruff format --check operator tests
	$(RUN)/mypy
	$(RUN)/lint-imports

.PHONY: fmt
fmt: install ## Format and fix what ruff can
	$(RUN)/ruff format operator tests
	$(RUN)/ruff check --fix operator tests

.PHONY: crds
crds: install cluster-bins ## Write every generated file (CRDs, chart CRDs, dashboards, docs, deploy/ manifests via helm)
	$(RUN)/tokenscale generate

.PHONY: verify
verify: install cluster-bins ## Fail if any generated file differs from what its source generates (needs helm)
	$(RUN)/tokenscale generate --check

.PHONY: test
test: install cluster-bins ## All tests: unit, simulator, and integration on a real local control plane
	$(RUN)/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Unit and simulator tests only (no cluster)
	$(RUN)/pytest -m "not integration and not e2e" $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: install cluster-bins ## Integration tests on the local control plane
	$(RUN)/pytest -m "integration or e2e" $(PYTEST_ARGS)

.PHONY: bench
bench: install ## Benchmarks; results go to docs/benchmarks.md by hand with their command
	$(RUN)/python -m benchmarks

.PHONY: bench-policies
bench-policies: install ## Regenerate docs/results.md and docs/results.json: every policy on the Azure traces
	$(RUN)/python -m benchmarks.policies

.PHONY: bench-coldstart
bench-coldstart: install ## Regenerate docs/results-coldstart.md: the oracle's plans with cold starts paid
	$(RUN)/python -m benchmarks.coldstart

.PHONY: bench-hetero
bench-hetero: install ## Regenerate docs/results-hetero.md: homogeneous vs heterogeneous pools, KV across domains
	$(RUN)/python -m benchmarks.hetero

.PHONY: demo
demo: install cluster-bins ## The whole system on one machine: control plane, twin, operator, live view, report
	$(RUN)/tokenscale demo --trace $(TRACE) --policy $(POLICY) --speedup $(SPEEDUP) --duration $(DURATION)

# kind (Docker; not run in CI here): make kind-up, make e2e-kind, make kind-down. See docs/demo.md "On kind".
KIND_CLUSTER ?= tokenscale
KIND_POD_CIDR ?= 127.253.0.0/16
KIND_KUBECONFIG ?= $(or $(TOKENSCALE_CACHE_DIR),$(HOME)/.cache/tokenscale)/kind-$(KIND_CLUSTER).kubeconfig
KIND_ENV := KIND_CLUSTER=$(KIND_CLUSTER) KIND_POD_CIDR=$(KIND_POD_CIDR) KIND_KUBECONFIG=$(KIND_KUBECONFIG) PY=$(PY)

.PHONY: kind-up kind-down e2e-kind demo-kind
kind-up: install cluster-bins ## (Docker) A kind cluster with KWOK fake GPU nodes whose pods get loopback IPs
	$(KIND_ENV) bash tools/kind.sh up
kind-down: ## (Docker) Delete the kind cluster
	$(KIND_ENV) bash tools/kind.sh down
e2e-kind: install ## (Docker) The end-to-end demo test against the kind cluster of `make kind-up`
	TOKENSCALE_E2E_KUBECONFIG=$(KIND_KUBECONFIG) TOKENSCALE_E2E_POD_CIDR=$(KIND_POD_CIDR) $(RUN)/pytest -m e2e tests/e2e $(PYTEST_ARGS)
demo-kind: install ## (Docker) make demo on the kind cluster of `make kind-up`
	$(RUN)/tokenscale demo --kubeconfig $(KIND_KUBECONFIG) --pod-cidr $(KIND_POD_CIDR) --trace $(TRACE) --policy $(POLICY) --speedup $(SPEEDUP) --duration $(DURATION)

.PHONY: dev-cluster-up dev-cluster-down
dev-cluster-up: install cluster-bins ## Start the local control plane in the background
	$(RUN)/tokenscale dev-cluster up
dev-cluster-down: install ## Stop the local control plane
	$(RUN)/tokenscale dev-cluster down

.PHONY: clean
clean: ## Remove the virtualenv and caches (not the cluster binaries)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
