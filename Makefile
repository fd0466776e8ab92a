# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Needs Python 3.11 or 3.12, Java 17+ and Maven (the Kafka broker's jars come from Maven Central).
PY ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,trees]"
	touch $(STAMP)

setup: $(STAMP)

# Start Kafka (KRaft) -> ingest shipped real Binance bars -> replay through the flow -> report.
demo: setup
	$(BIN)/cryptoflow demo --out out/demo

# Unit, dataflow and integration tests; starts its own Kafka broker on a test port.
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: setup
	$(BIN)/python bench/ticks_to_bars.py
	$(BIN)/python bench/replay_throughput.py
	$(BIN)/python bench/features.py

clean:
	-$(BIN)/cryptoflow infra down
	rm -rf var out
