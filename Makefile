# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Needs Python 3.11 or 3.12, Java 17+ and Maven (the Kafka broker's jars come from Maven Central).
PY ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,ml]"
	touch $(STAMP)

setup: $(STAMP)

# Start Kafka (KRaft) -> ingest shipped real Binance bars -> replay through the flow -> report.
demo: setup
	$(BIN)/cryptoflow demo --out out/demo

# The HTML report is checked in headless Chromium: Debian's package, installed when missing
# (as root, or with sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { S=; [ "$$(id -u)" -eq 0 ] || S=sudo; \
	  $$S apt-get update -qq && $$S apt-get install -y -qq chromium >/dev/null; } || \
	  echo "WARNING: could not install chromium: the HTML report's browser test will be skipped"

# Unit, dataflow and integration tests; starts its own Kafka broker on a test port.
test: setup browser
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
