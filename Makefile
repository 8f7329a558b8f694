# The two commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-unit lint bench clean

demo: $(STAMP)
	$(VENV)/bin/charles-stream run

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The unit tier only (tests/conftest.py): no TensorFlow, X server, browser or OBS; under a minute.
test-unit: $(STAMP)
	$(PY) -m pytest -q -m unit -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) bench/sim.py

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
