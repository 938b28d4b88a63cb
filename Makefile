# One command to set up and run the demo, one to set up and run the tests.
# Both create (or reuse) the virtualenv at .venv and install the project with its training extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.autoenc-installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[train,test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/autoenc demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/image_speed.py

clean:
	rm -rf runs demo .pytest_cache
