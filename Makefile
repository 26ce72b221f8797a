# One entry point for people and CI: `make check` is what .ci/run runs.
UV ?= uv
# Extra pytest arguments, e.g. PYTEST_ARGS="-n 3 --dist loadfile" to run test files in parallel.
PYTEST_ARGS ?=

.PHONY: check lint types test fmt schemas docs

check: lint types test

lint:
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

types:
	$(UV) run --frozen mypy

test:
	$(UV) run --frozen pytest $(PYTEST_ARGS)

fmt:
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

schemas:
	$(UV) run --frozen bridge schemas

docs:
	$(UV) run --frozen python -m bridge.settings_reference
