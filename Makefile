# Two commands on a fresh machine: `make demo` and `make test` (both set up .venv first).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup lint bench clean compat

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

# `make demo SCAN=/path/to/scan.raw` runs the chain on a real scan instead of a generated one.
demo: $(STAMP)
ifdef SCAN
	$(VENV)/bin/maxrf process "$(SCAN)"
else
	$(VENV)/bin/maxrf demo demo-output
endif

test: $(STAMP)
	$(VENV)/bin/ruff check maxrf tasks flows tests benchmarks
	scripts/ensure-browser
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -c requirements.lock -e ".[bench]"
	$(PY) benchmarks/convert.py
	$(PY) benchmarks/elementmaps.py
	$(PY) benchmarks/view.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache

# maxrf4u (the reference) reading our files, in its own environment (heavy: ~1.3 GB).
compat: $(STAMP)
	@test -x .venv-maxrf4u/bin/python || "$$(scripts/find-python)" -m venv .venv-maxrf4u
	.venv-maxrf4u/bin/python -m pip install --quiet "maxrf4u==0.1.27"
	MAXRF4U_PYTHON=$(CURDIR)/.venv-maxrf4u/bin/python $(VENV)/bin/pytest -q tests/test_maxrf4u_compat.py
