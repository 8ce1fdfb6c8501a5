# The two commands the README opens with are `make demo` and `make test`.
# Each one sets everything up first (scripts/setup.sh) and is safe to re-run.
VENV := .venv/bin

.PHONY: setup demo test test-zoo test-fuzz lint bench bench-quick bench-gate bench-baseline

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
# features_only), tests/test_naming.py, and the class activation maps of the nine models of
# tests/test_cam_oracle.py against pytorch-grad-cam. On two cores: tests/zoo 386 tests in
# 15-45 min (by load), the peers 200 more in about 20 min; 8.5 GiB peak memory.
# scripts/zoo_report.py runs the tests/zoo checks into docs/zoo.md.
test-zoo: setup
	$(VENV)/pytest -q -m "zoo or not zoo" --durations=10 tests/zoo tests/peers tests/test_naming.py \
		tests/test_cam_oracle.py tests/test_cam_captured.py

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

# The regression gate CI runs (.ci/run): resnet18's convs against a committed baseline.
# Exit code 3 when fxmaps / forward is more than BENCH_TOLERANCE above the baseline's ratio;
# 35% is about 1.75x the widest gap seen between runs on the loaded 2-core development
# machines (benchmarks/README.md, "The CI gate"). The table and the gate's line go to
# out/bench/summary.md for a CI job summary.
BENCH_GATE := resnet18 --input-size 3 112 112 --batch 2 --layers conv --threads 1 --repeat 15
BENCH_BASELINE := benchmarks/baselines/resnet18_conv.json
BENCH_TOLERANCE := 35%

bench-gate: setup
	mkdir -p out/bench
	$(VENV)/fxmaps bench $(BENCH_GATE) --baseline $(BENCH_BASELINE) \
		--tolerance $(BENCH_TOLERANCE) --json out/bench/bench.json --markdown out/bench/summary.md

# Remake the gate's baseline, after a change meant to move the ratio.
bench-baseline: setup
	$(VENV)/fxmaps bench $(BENCH_GATE) --json $(BENCH_BASELINE)
