# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
HOST    ?= 127.0.0.1
PORT    ?= 5000

.PHONY: install run serve test test-browser screenshots bench bench-calls bench-workbook bench-web bench-tracking soak system-deps clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

# The State's design system (DSFR), pinned and checked, served by the app itself.
DSFR := web/static/dsfr/.version-1.15.3
$(DSFR): scripts/fetch-dsfr.sh
	@bash scripts/fetch-dsfr.sh

install: $(STAMP) $(DSFR)

# Debian packages the tests need: PostgreSQL server binaries (a throwaway cluster is started by
# the tests themselves), LibreOffice Calc, and Chromium for the browser tests.
system-deps:
	@bash scripts/system-deps.sh

# The scheduler runs in its own process beside the web server and stops with it.
run: install
	$(VENV)/bin/flask --app app setup
	$(VENV)/bin/flask --app app scheduler & scheduler=$$!; \
	trap 'kill $$scheduler 2>/dev/null; wait $$scheduler' EXIT; trap 'exit 130' INT TERM; \
	echo "Interface web : http://$(HOST):$(PORT)/ (premier compte : voir « premier compte administrateur » ci-dessus)"; \
	SVI_ALLOW_SIMULATED_TIME=$${SVI_ALLOW_SIMULATED_TIME:-1} \
	  $(VENV)/bin/flask --app app run --host $(HOST) --port $(PORT)

# The production server: migrations and first-run data (no demo lines), the scheduler, and
# gunicorn with deploy/gunicorn.conf.py (workers, timeouts, proxies, metrics: deploy/README.md)
# on HOST:PORT, with the settings of the environment (DATABASE_URL, empty: instance/svi.sqlite3).
serve: install
	$(VENV)/bin/flask --app app setup --no-demo
	$(VENV)/bin/flask --app app scheduler & scheduler=$$!; \
	trap 'kill $$scheduler 2>/dev/null; wait $$scheduler' EXIT; trap 'exit 130' INT TERM; \
	WEB_BIND=$${WEB_BIND:-$(HOST):$(PORT)} $(VENV)/bin/gunicorn --config deploy/gunicorn.conf.py

test: install system-deps
	$(VENV)/bin/python -m pytest

# Browser tests only (Debian's Chromium driven by Playwright; installed by system-deps).
test-browser: install system-deps
	$(VENV)/bin/python -m pytest tests/browser

# Full-page PNGs of the main web pages, linked from the README.
SCREENSHOTS_DIR ?= docs/screenshots
screenshots: install system-deps
	$(VENV)/bin/python -m scripts.screenshots $(SCREENSHOTS_DIR)

# The four benchmarks (about 2 min + 16 min + 1 min + 5 min); each exits non-zero when its
# targets are missed.
bench: install
	@bash scripts/system-deps.sh bench
	$(VENV)/bin/python -m bench; calls=$$?; \
	$(VENV)/bin/python -m bench --workbook-only; book=$$?; \
	$(VENV)/bin/python -m bench.web; web=$$?; \
	$(VENV)/bin/python -m bench.tracking; tracking=$$?; \
	exit $$(( calls || book || web || tracking ))

bench-calls: install
	@bash scripts/system-deps.sh bench
	$(VENV)/bin/python -m bench

# The admin's web pages against their data read by one SQL statement (about 1 min 15 s).
bench-web: install
	@bash scripts/system-deps.sh
	$(VENV)/bin/python -m bench.web

# « Mes appels » and the national dashboard over 1,000,000 calls and 1,200,000 solicitations,
# on SQLite and PostgreSQL, against one SQL statement each (about 5 min, most of it building).
bench-tracking: install
	@bash scripts/system-deps.sh
	$(VENV)/bin/python -m bench.tracking

bench-workbook: install
	$(VENV)/bin/python -m bench --workbook-only

# Two app instances (deploy/gunicorn.conf.py, 2 workers each) + the scheduler on one throwaway
# PostgreSQL: steady calls and web pages for SOAK_SECONDS (default 600); no 5xx, no call lost,
# workers' memory flat. Not part of `make test`. Report: bench/results/soak.md.
soak: install
	@bash scripts/system-deps.sh
	$(VENV)/bin/python -m bench.soak

clean:
	rm -rf $(VENV) instance .pytest_cache
