# Two entry points (README quickstart): `make demo` runs the main job offline, `make test` the tests.
# Both create .venv on first use. torch is pinned to the CPU wheel available on the project machines.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml
ROOT ?= runs/demo

.PHONY: demo test lint install clean readme-numbers

# The install takes minutes (a 2.5 GB venv): each step says what it does and pip shows its progress.
$(STAMP): pyproject.toml
	@echo "[install 1/3] creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "[install 2/3] torch==2.13.0 (CPU wheel)"
	$(BIN)/pip install --progress-bar on torch==2.13.0
	@echo "[install 3/3] dars and its dependencies (prefect, litellm, polars, scikit-learn, ...)"
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)
	@echo "[install] done: $(VENV)"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dars run --config $(CONFIG) --root $(ROOT)

# The README's headline figures from the demo run's results (docs/demo_numbers.md); pass run
# facts with FACTS, e.g. make readme-numbers FACTS="--fact 'wall time=16 min 51 s'".
readme-numbers: $(STAMP)
	$(BIN)/dars readme-numbers --config $(CONFIG) --root $(ROOT) $(FACTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
