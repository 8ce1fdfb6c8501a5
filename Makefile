# The two commands the README opens with are `make demo` and `make test`.
# Each one sets everything up first (scripts/setup.sh) and is safe to re-run.
VENV := .venv/bin

.PHONY: setup demo test test-zoo lint bench bench-quick

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/fxmaps demo -o out/demo

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

test: lint
	$(VENV)/pytest -q

test-zoo: setup
	$(VENV)/pytest -q -m zoo

bench: setup
	$(VENV)/python benchmarks/bench_analyze.py
	$(VENV)/python benchmarks/bench_extract.py
	$(VENV)/python benchmarks/bench_plot.py
	$(VENV)/python benchmarks/bench_render_graph.py

bench-quick: setup
	$(VENV)/python benchmarks/bench_extract.py --quick
