# Two commands: `make demo` runs the main job, `make test` runs the checks.
# Both create and use the virtual environment in .venv.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast browser lint bench clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	PROTOSHOT_DATA_DIR=$${PROTOSHOT_DATA_DIR:-../shared/data} HF_HUB_OFFLINE=1 $(VENV)/bin/protoshot demo

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks docs
	$(VENV)/bin/ruff format --check src tests benchmarks docs
	$(VENV)/bin/mypy
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# the inner loop: lint, types and every test that loads no real model (about a minute)
test-fast: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks docs
	$(VENV)/bin/mypy
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

# the web console's test drives Debian's chromium headless: installed here when missing and
# allowed (root with apt-get); otherwise that test skips and says why
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	     && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	          --no-install-recommends chromium chromium-driver; } >/tmp/protoshot-apt.log 2>&1; } \
	|| echo "chromium could not be installed (needs root and apt-get; see /tmp/protoshot-apt.log): the console's browser test will skip"

bench: $(STAMP)
	$(PY) benchmarks/episodes.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
