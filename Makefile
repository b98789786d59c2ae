# Two commands on a fresh machine: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench profile format clean install

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/enricher dev

# The suite in TEST_PROCESSES parallel processes (pytest-xdist), each with its own broker, Redis
# and mock LLM; idle ones take tests from busy ones (worksteal), so no long module ends the run alone.
# Four on this 2-core machine: its tests mostly wait on workers, brokers and browsers, so two
# processes kept the cores about half busy (7.5 minutes); four take about 5.5.
TEST_PROCESSES ?= 4

test: $(STAMP)
	$(BIN)/enricher prompts check prompts
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check app agents devstack tests bench
	$(BIN)/ruff format --check app agents devstack tests bench
	$(BIN)/mypy app agents devstack bench
	$(BIN)/hadolint Dockerfile

format: $(STAMP)
	$(BIN)/ruff check --fix app agents devstack tests bench
	$(BIN)/ruff format app agents devstack tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.codecs
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.limits
	$(BIN)/python -m bench.restarts
	$(BIN)/python -m bench.signals
	$(BIN)/python -m bench.guard
	$(BIN)/python -m bench.handoff
	$(BIN)/python -m bench.embedded
	$(BIN)/python -m bench.knowledge
	$(BIN)/python -m bench.features
	$(BIN)/python -m bench.coalesce
	$(BIN)/python -m bench.profile

# Where the worker's CPU goes on the standard load: bench/results/profile.svg and profile.md.
profile: $(STAMP)
	$(BIN)/python -m bench.profile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .enricher-dev
