# The two commands of the README: `make demo` and `make test`. Both create the virtual
# environment on first use (only Python 3.11+ is needed on the machine).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint schema bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fieldgate demo $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy gateway adapters cloud simulators fieldgate
	$(BIN)/pytest $(ARGS)

schema: $(STAMP)
	$(BIN)/fieldgate gateway schema --output config/gateway.schema.json

bench: $(STAMP)
	$(BIN)/fieldgate bench e2e --tags 1000 --interval 1000 --duration 20
	$(BIN)/fieldgate bench e2e --tags 5000 --interval 100 --duration 20

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
