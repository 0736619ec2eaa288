# The two set-up commands of README.md. Both (re)install into .venv first, so they work on a
# fresh clone; scripts/install.sh is idempotent.
VENV ?= .venv

.PHONY: quickstart test lint

quickstart:
	bash scripts/install.sh
	$(VENV)/bin/recsys quickstart

# The backend's production half runs against real PostgreSQL and Redis (Debian packages, started
# on 127.0.0.1 by scripts/services.sh); RECSYS_REQUIRE_SERVICES=1 makes their absence a failure.
test:
	bash scripts/install.sh --test
	bash scripts/services.sh start
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	eval "$$(bash scripts/services.sh env)" && RECSYS_REQUIRE_SERVICES=1 $(VENV)/bin/python -m pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
