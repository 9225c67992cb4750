# Two commands a newcomer needs: `make demo` and `make test`. Both set up .venv from scratch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PARAGEN_DATA ?= ../shared/data
export PARAGEN_DATA

.PHONY: setup demo test test-fast clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel (an open range would pull a CUDA build)
	$(BIN)/pip install --quiet torch==2.13.0
	# dev = what the tests import: the serve, export, clean and hf extras (transformers leaves torch alone)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/activate

setup: $(BIN)/activate

demo: setup
	$(BIN)/python -m paragen.demo

# Everything CI runs (about 10 minutes on 2 cores), slowest tests listed at the end.
test: setup
	$(BIN)/python -m pytest tests --durations=15

# The edit loop: unit tests and short end-to-end runs, without the tests marked slow.
test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow" --durations=10

clean:
	rm -rf $(VENV) runs/demo
