# The two commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-unit lint bench clean system-packages-demo system-packages-test
# Prerequisites run left to right: the system packages are checked before pip or a test runs.
.NOTPARALLEL:

demo: system-packages-demo $(STAMP)
	$(VENV)/bin/charles-stream run

test: system-packages-test $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The unit tier only (tests/conftest.py): no TensorFlow, X server, browser or OBS; under a minute.
test-unit: system-packages-demo $(STAMP)
	$(PY) -m pytest -q -m unit -n 2

lint: system-packages-demo $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: system-packages-demo $(STAMP)
	$(PY) bench/sim.py

# The Debian packages each target needs, listed once in .ci/system-packages (.ci/run uses it
# too): installed when missing as root or with passwordless sudo, else named in one line.
system-packages-demo system-packages-test: system-packages-%:
	@.ci/system-packages $*

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
