# Two commands on a fresh machine with Python 3.11+ and make: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test check lint types fuzz bench scaleout bench-longpoll chaos clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vidhook needs Python 3.11+; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/vidhook dev

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

# A longer schemathesis run than the suite's: no 5xx, no response off /openapi.json.
fuzz: $(STAMP)
	SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-200} $(BIN)/python -m pytest -k schemathesis tests/test_contract.py

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Figures, each beside a ceiling measured in the same run (~4 min; not part of `make test`).
# Load comes from wrk (Debian/Ubuntu: sudo apt-get install wrk); without it a Python
# generator stands in, sharing the CPU with the servers. BENCH_ARGS=--quick for a short run.
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || echo "bench: wrk is not installed (sudo apt-get install wrk); falling back to bench/loadgen.py" >&2
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# N API processes x M workers on one Redis, N, M in {1, 2} (~2 min; docs/capacity.md).
scaleout: $(STAMP)
	$(BIN)/python -m bench.scaleout $(SCALEOUT_ARGS)

# 1,000 concurrent long-polls against one API process: Redis commands per long-poll (~1 min).
bench-longpoll: $(STAMP)
	$(BIN)/python -m bench.longpoll $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .vidhook .pytest_cache .mypy_cache .ruff_cache tests/js/node_modules

# 200 jobs through real processes while workers, the API and Redis are SIGKILLed, fal answers
# 429/503 in bursts and rotates its signing key, webhooks are dropped, duplicated, delayed and
# forged, the callback receiver goes down (~2 min). Prints figures; fails on a broken promise.
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)
