# Two commands for a newcomer: `make demo` and `make test`. Both install what they need.
PYTHON_BASE ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PIP_FLAGS   := --disable-pip-version-check -q
REQS        := requirements/base.txt requirements/constraints.txt pyproject.toml
# Other Blenders the add-on tests run under (the main venv has 4.5 LTS): .venv-<name> from
# requirements/<name>.txt. bpy5: Blender 5.0 (Action.fcurves etc. removed); bpy42: 4.2 LTS, the
# oldest supported (legacy actions only).
BLENDERS    := bpy5 bpy42

.PHONY: test venvs test-main $(addprefix test-,$(BLENDERS)) demo lint bench venv clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: $(REQS)
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -c requirements/constraints.txt -r requirements/base.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	@touch $@

$(BLENDERS:%=.venv-%/.stamp): .venv-%/.stamp: requirements/%.txt requirements/constraints-%.txt
	@test -x .venv-$*/bin/python || $(PYTHON_BASE) -m venv .venv-$*
	.venv-$*/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	.venv-$*/bin/python -m pip install $(PIP_FLAGS) -c requirements/constraints-$*.txt -r requirements/$*.txt
	@touch $@

# The three venvs install side by side (pip keeps about one core busy; on 2 cores, a fresh clone:
# 150 s against 198 s one after the other with pip's cache warm, 196 s against about 215 s without
# it), then the suites run one after the other (side by side they contend for the 2 cores and the
# add-on's timed cancels flake).
test:
	@$(MAKE) --no-print-directory -j3 venvs
	@$(MAKE) --no-print-directory -j1 test-main $(addprefix test-,$(BLENDERS))

venvs: $(VENV)/.stamp $(BLENDERS:%=.venv-%/.stamp)

# The suites and the demo write compiled bytecode (to __pycache__/, which git ignores): where the
# machine sets PYTHONDONTWRITEBYTECODE, every subprocess the tests start (servers, CLIs, torchrun's
# ranks) and pytest's assertion rewriting would compile the project anew. Measured on the service
# and example tests: 146-149 s against 160-169 s. (A PYTHONPYCACHEPREFIX outside the tree would
# also ignore the compiled site-packages pip installed: the bpy 4.2 suite's first run took 64 s
# against 53-55 s.)
SUITES      := test-main $(addprefix test-,$(BLENDERS)) demo
$(SUITES): export PYTHONDONTWRITEBYTECODE :=

test-main: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The add-on's tests again under each other Blender (the main venv runs them under 4.5 LTS),
# except the `slow` 2,000-frame chunking test: its chunking and wire logic is the add-on's own
# Python, the same under every Blender, and the bpy calls it makes are covered by the others.
$(BLENDERS:%=test-%): test-%: $(VENV)/.stamp .venv-%/.stamp
	EMO_BACKEND_PYTHON=$(abspath $(PY)) .venv-$*/bin/python -m pytest -m "bpy and not slow" tests/addon

# The main job end to end on the embedded sample (out/demo/); a second run reuses what is done.
demo: $(VENV)/.stamp
	$(PY) -m backend.cli demo --out out/demo

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .

bench: $(VENV)/.stamp
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) $(addprefix .venv-,$(BLENDERS)) dist build out .pytest_cache
