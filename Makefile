# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so nothing else can pull a CUDA build in its place; then everything at the versions CI
# tested (constraints.txt), so a fresh machine gets what the suite ran on, not whatever is newest that day
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# after changing a dependency on purpose: record the versions now installed (then run make test and commit both)
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v "^torch==" > constraints.txt

# the main job on the bundled MiniLM: search passes x backends within 0.01 of cosine, write runs/demo
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/infertune optimize minilm --max-drop 0.01 --time-budget 540 --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=40

clean:
	rm -rf $(VENV) .pytest_cache
