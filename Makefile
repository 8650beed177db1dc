# Two commands for a newcomer: `make demo` and `make test`. Both install what they need.
PYTHON_BASE ?= python3
VENV        := .venv
VENV_BPY5   := .venv-bpy5
PY          := $(VENV)/bin/python
PY_BPY5     := $(VENV_BPY5)/bin/python
PIP_FLAGS   := --disable-pip-version-check -q
REQS        := requirements/base.txt requirements/constraints.txt pyproject.toml
REQS_BPY5   := requirements/bpy5.txt requirements/constraints-bpy5.txt

.PHONY: test test-main test-bpy5 demo lint bench venv clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: $(REQS)
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -c requirements/constraints.txt -r requirements/base.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	@touch $@

$(VENV_BPY5)/.stamp: $(REQS_BPY5)
	@test -x $(PY_BPY5) || $(PYTHON_BASE) -m venv $(VENV_BPY5)
	$(PY_BPY5) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY_BPY5) -m pip install $(PIP_FLAGS) -c requirements/constraints-bpy5.txt -r requirements/bpy5.txt
	@touch $@

test: test-main test-bpy5

test-main: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The add-on's tests again under Blender 5.0 (the main venv runs them under 4.5 LTS).
test-bpy5: $(VENV)/.stamp $(VENV_BPY5)/.stamp
	EMO_BACKEND_PYTHON=$(abspath $(PY)) $(PY_BPY5) -m pytest -m bpy tests/addon

# The main job end to end on the embedded sample (out/demo/); a second run reuses what is done.
demo: $(VENV)/.stamp
	$(PY) -m backend.cli demo --out out/demo

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .

bench: $(VENV)/.stamp
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) $(VENV_BPY5) dist build out .pytest_cache
