# The two set-up commands of README.md. Both (re)install into .venv first, so they work on a
# fresh clone; scripts/install.sh is idempotent.
VENV ?= .venv

.PHONY: quickstart test lint

quickstart:
	bash scripts/install.sh
	$(VENV)/bin/recsys quickstart

test:
	bash scripts/install.sh --test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
