# The two commands the README opens with are `make demo` and `make test`.
# Each one sets everything up first (scripts/setup.sh) and is safe to re-run.
VENV := .venv/bin

.PHONY: setup demo test test-zoo test-fuzz lint bench bench-quick

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

# Every model of every zoo: tests/zoo (torchvision classification, detection and
# segmentation backbones, video, a timm sample, the models fx cannot trace whole), and the
# zoo-wide oracles of tests/peers (torchvision's feature-extraction cases, timm's
# features_only) and tests/test_naming.py. On two cores: tests/zoo 386 tests in 15-45 min
# (by load), the peers 200 more in about 20 min; 8.5 GiB peak memory.
# scripts/zoo_report.py runs the tests/zoo checks into docs/zoo.md.
test-zoo: setup
	$(VENV)/pytest -q -m "zoo or not zoo" --durations=10 tests/zoo tests/peers tests/test_naming.py

# The fuzz of tests/test_fuzz.py at length: 2000 fresh inputs per test (the default run
# draws 25 fixed ones); hypothesis prints how to reproduce a failure.
test-fuzz: setup
	FXMAPS_FUZZ_EXAMPLES=2000 $(VENV)/pytest -q tests/test_fuzz.py

bench: setup
	$(VENV)/python benchmarks/bench_analyze.py
	$(VENV)/python benchmarks/bench_extract.py
	$(VENV)/python benchmarks/bench_plot.py
	$(VENV)/python benchmarks/bench_render_graph.py
	$(VENV)/python benchmarks/bench_any_model.py --medium --threads 1

bench-quick: setup
	$(VENV)/python benchmarks/bench_extract.py --quick
