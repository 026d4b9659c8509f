# The two commands of the README. setup installs torch first, and only where none imports: an
# unpinned torch from `pip install -e .` could pull a multi-GB CUDA build on a machine without
# a GPU, and a torch you installed yourself (a CUDA build, a ROCm build) is left alone.
#   make setup                      torch==2.13.0 only if `import torch` fails, then the project
#   make setup TORCH=torch==2.5.1   install this torch spec whether or not one is present
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu   take torch from that index
#                                   (the CPU builds, for a public-index machine without a GPU)
PY ?= python
TORCH_PIN = torch==2.13.0
TORCH ?=
TORCH_INDEX ?=

# Evaluated only by setup's recipe (so `make lint` does not import torch); `make -n setup`
# prints which torch it would install, if any.
torch_present = $(shell $(PY) -c "import torch" >/dev/null 2>&1 && echo yes)
torch_install = $(or $(TORCH),$(if $(torch_present),,$(TORCH_PIN)))
torch_index = $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) )

.PHONY: setup demo test lint bench

setup:
	$(if $(torch_install),$(PY) -m pip install -q $(torch_index)$(torch_install),@echo "torch already importable: kept (make setup TORCH=$(TORCH_PIN) installs the pin)")
	$(PY) -m pip install -q -e ".[dev]"

demo: setup
	icegrt pipeline run.name=demo

test: setup
	$(PY) -m pytest -q

lint:
	ruff check .
	ruff format --check .

bench:
	$(PY) benchmarks/ppo_step.py
