# The two commands of the README. Torch is pinned to the CPU build first: an unpinned torch
# would pull a multi-GB CUDA build on a machine without one.
PY ?= python
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench

setup:
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"

demo: setup
	icegrt pipeline run.name=demo

test: setup
	$(PY) -m pytest -q

lint:
	ruff check .
	ruff format --check .

bench:
	$(PY) benchmarks/run.py
