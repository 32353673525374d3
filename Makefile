# Two commands: `make demo` runs the main job, `make test` runs the checks.
# Both create and use the virtual environment in .venv.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	PROTOSHOT_DATA_DIR=$${PROTOSHOT_DATA_DIR:-../shared/data} HF_HUB_OFFLINE=1 $(VENV)/bin/protoshot demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# the inner loop: lint, types and every test that loads no real model (about a minute)
test-fast: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/episodes.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
