# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Both create or reuse .venv and install what they need; torch comes first, as a CPU build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test setup clean

demo: $(STAMP)
	$(BIN)/verifriend demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .hypothesis
