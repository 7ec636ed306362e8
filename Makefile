# Two commands on a fresh machine: `make demo` and `make test` (both set up .venv first).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup lint bench clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/maxrf demo demo-output

test: $(STAMP)
	$(VENV)/bin/ruff check maxrf tasks flows tests benchmarks
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/convert.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
