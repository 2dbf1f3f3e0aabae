# Two commands set everything up on a fresh machine (Python 3.11+, Java 17):
#   make demo   - venv, install, generate a sample lake, run the nightly job for one day
#   make test   - venv, install, run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DATE ?= 2026-11-01

.PHONY: install demo test lint format bench clean browser

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf demo
	$(BIN)/proxylink sample --out demo/lake --devices 200 --start $(DEMO_DATE) --days 2
	$(BIN)/proxylink run --conf conf/local.yaml --date $(DEMO_DATE)
	$(BIN)/proxylink report --conf conf/local.yaml --date $(DEMO_DATE)
	$(BIN)/proxylink sql --conf conf/local.yaml "SELECT Status, count(*) AS devices, \
	  sum(ProxyLegs)::BIGINT AS proxy_legs FROM proxy_coverage GROUP BY Status ORDER BY devices DESC"

# Two worker processes, whole test files each (their module fixtures stay in one process, each
# worker has its own Spark session): 6:48 against 10:50 in one process on the 2-core CI machine.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

# The report tests open the daily report in headless Chromium (Debian's package). As root on a
# fresh machine this installs it; otherwise it says what to install (the tests fail without it).
CHROMIUM_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
browser:
	@if [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Chromium for the report tests"; \
	  apt-get update -qq && $(CHROMIUM_INSTALL); \
	else \
	  echo "make: the report tests need Chromium; as root run: apt-get update && $(CHROMIUM_INSTALL)" >&2; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# make bench SCALES=1,3 also benches a lake of three times the events, in the same invocation.
SCALES ?= 1
bench: $(STAMP)
	$(BIN)/python bench/run_bench.py --scales $(SCALES)

clean:
	rm -rf demo bench/.data build .pytest_cache .mypy_cache .ruff_cache
