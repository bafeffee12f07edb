# localevents: every task runs through uv, so a fresh clone needs only uv.

# List the recipes.
default:
    @just --list

# Serve the events API on 127.0.0.1:4200 (the default events file, or --database FILE).
[group('run')]
serve *ARGS:
    uv run localevents serve {{ARGS}}

# Lint, type-check and run the whole test suite (what CI runs), in two worker processes.
[group('check')]
test *ARGS: lint
    uv run pytest -n 2 {{ARGS}}

# ruff (lint + format check) and mypy --strict on the package and the benchmarks.
[group('check')]
lint:
    uv run ruff check .
    uv run ruff format --check .
    uv run mypy

# Reformat and auto-fix what ruff can.
[group('check')]
fmt:
    uv run ruff format .
    uv run ruff check --fix .

# Run the benchmark suite (--quick for a smoke run); JSON lands in benchmarks/results/.
[group('measure')]
bench *ARGS:
    uv run python -m benchmarks {{ARGS}}
