"""Extraction on models torch.fx cannot trace whole, against a plain forward, hooks and torchlens.

For each model (built small with random weights, as in ``tests/zoo/any_model.py``) the
graph is analysed once; then, interleaved by ``fxmaps.bench.harness.run_interleaved``
with a rotating order after warm-up, in one process:

* the model's plain forward pass (``torch.no_grad``), the reference;
* fxmaps: a ``FeatureExtractor`` of every conv and linear module call, called on the
  inputs (the model runs as it was captured, each map taken where it is made);
* forward hooks that clone the output of every conv and linear module (what people
  write by hand);
* torchlens (``torchlens.trace``), an eager recorder of every op, when installed. It wraps
  torch's functions for the whole process once used, which slows every later forward pass,
  so it is timed in a process of its own against that process's plain forward.

The ratio is the median over rounds of each run's time over the plain forward's time in
the same round. A run is as many calls as make the plain forward take 20 ms (as timeit
does), so that sub-millisecond models are timed warm, as they run in a loop. Target: fxmaps
within 1.2x on detection, RAFT, BERT and the diffusion UNet. Tiny configs run in well
under a millisecond, where fixed per-call costs weigh; ``--medium`` adds BERT, GPT-2,
Llama and ViT at sizes whose forward takes 10-100 ms.

    python benchmarks/bench_any_model.py                # the issue's models (make bench)
    python benchmarks/bench_any_model.py --medium       # and the larger transformers
    python benchmarks/bench_any_model.py --models bert raft_small --repeat 5 --threads 1

It prints a markdown table and writes ``bench_any_model.json`` and ``.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the zoo's builders live with the tests

import fxmaps  # noqa: E402
from fxmaps.bench.extraction import hooked_forward  # noqa: E402
from fxmaps.bench.harness import (  # noqa: E402
    Timing,
    format_table,
    record_environment,
    run_interleaved,
    write_results,
)
from tests.zoo.any_model import CORPUS, AnyModel, is_layer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT = [
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "ssdlite320_mobilenet_v3_large",
    "raft_small",
    "bert",
    "unet2d",
]
FORWARD, FXMAPS, HOOKS, TORCHLENS = "plain forward", "fxmaps", "forward hooks", "torchlens"
_RUN_SECONDS = 0.02


def _ids(vocab: int = 1000, length: int = 128) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, length), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def bert_medium() -> tuple[nn.Module, fxmaps.Inputs]:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=256,
    )  # fmt: skip
    return BertModel(config), fxmaps.Inputs(kwargs=_ids())


def gpt2_medium() -> tuple[nn.Module, fxmaps.Inputs]:
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(vocab_size=1000, n_embd=256, n_layer=4, n_head=4, n_positions=256)
    return GPT2Model(config), fxmaps.Inputs(kwargs={**_ids(), "use_cache": False})


def llama_medium() -> tuple[nn.Module, fxmaps.Inputs]:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    return LlamaModel(config), fxmaps.Inputs(kwargs={**_ids(), "use_cache": False})


def vit_medium() -> tuple[nn.Module, fxmaps.Inputs]:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=224, patch_size=16, hidden_size=256, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=1024,
    )  # fmt: skip
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    return ViTModel(config), fxmaps.Inputs(kwargs={"pixel_values": pixels})


MEDIUM: dict[str, Callable[[], tuple[nn.Module, fxmaps.Inputs]]] = {
    "bert_medium": bert_medium,
    "gpt2_medium": gpt2_medium,
    "llama_medium": llama_medium,
    "vit_medium": vit_medium,
}


def main() -> None:
    args = _arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.torchlens_only:
        print(json.dumps(_measure_torchlens(args.torchlens_only, args.repeat)))
        return
    names = args.models or DEFAULT + (list(MEDIUM) if args.medium else [])
    rows, data = [], []
    for name in names:
        result = _measure(name, args.repeat)
        result["ratios"][TORCHLENS] = _torchlens_ratio(name, args)
        rows.append(_row(result))
        data.append(result)
        print(f"{name}: fxmaps/forward {result['ratios'][FXMAPS]:.3f}", flush=True)
    environment = record_environment("cpu", torchlens=_version("torchlens"))
    headers = ["model", "maps", "eager calls", "forward ms", "fxmaps / forward", "hooks / forward"]
    headers.append("torchlens / forward")
    table = format_table(rows, headers, align=["left"] + ["right"] * (len(headers) - 1))
    report = (
        f"# Extraction on models torch.fx cannot trace whole\n\n{environment.describe()}\n"
        f"{args.repeat} rounds, interleaved, after warm-up; ratio = median over rounds of "
        f"(time / plain forward's time in the same round).\n\n{table}\n"
    )
    print(report)
    payload = {"environment": environment.to_json(), "rounds": args.repeat, "models": data}
    md, js = write_results(args.out, "bench_any_model", report, payload)
    print(f"wrote {md} and {js}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", help="zoo entries or *_medium models")
    parser.add_argument("--medium", action="store_true", help="add the larger transformers")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--torchlens-only", metavar="MODEL", help=argparse.SUPPRESS)
    return parser.parse_args()


def _build(name: str) -> tuple[nn.Module, fxmaps.Inputs]:
    torch.manual_seed(0)
    if name in MEDIUM:
        model, inputs = MEDIUM[name]()
        return model.eval(), inputs
    entry: AnyModel = next(e for e in CORPUS if e.name == name)
    return entry.build()


def _measure(name: str, repeat: int) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, inputs = _build(name)
        graph = fxmaps.analyze(model, inputs)
    chosen = [layer for layer in graph.layers() if layer.module and is_layer(layer.module)]
    extractor = fxmaps.FeatureExtractor(graph, chosen)
    targets = sorted({layer.target for layer in chosen})
    callables, calls = _repeated(
        {
            FORWARD: lambda: inputs.call(model),
            FXMAPS: lambda: inputs.call(extractor),
            HOOKS: lambda: hooked_forward(model, targets, inputs, clone=True),
        }
    )
    timings = run_interleaved(callables, rounds=repeat, warmup=1)
    ratios = {key: timing.ratio_to(timings[FORWARD]) for key, timing in timings.items()}
    return {
        "model": name,
        "maps": len(chosen),
        "eager": [region.name for region in graph.eager],
        "calls_per_run": calls,
        "timings": {key: timing.to_json() for key, timing in timings.items()},
        "ratios": ratios,
    }


def _torchlens_ratio(name: str, args: argparse.Namespace) -> float | None:
    """torchlens's time over the plain forward's, measured in a process of its own."""
    if importlib.util.find_spec("torchlens") is None:
        return None
    command = [sys.executable, __file__, "--torchlens-only", name, "--repeat", str(args.repeat)]
    command += ["--threads", str(args.threads)] if args.threads else []
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    ratio: float = json.loads(done.stdout.strip().splitlines()[-1])
    return ratio


def _measure_torchlens(name: str, repeat: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, inputs = _build(name)
    callables, _ = _repeated(
        {FORWARD: lambda: inputs.call(model), TORCHLENS: lambda: _torchlens(model, inputs)}
    )
    timings = run_interleaved(callables, rounds=repeat, warmup=1)
    return timings[TORCHLENS].ratio_to(timings[FORWARD])


def _repeated(
    callables: dict[str, Callable[[], object]],
) -> tuple[dict[str, Callable[[], object]], int]:
    """Each callable run, without gradients, as many times as make the first (the plain
    forward) take 20 ms; and how many times that is."""
    first = next(iter(callables.values()))
    with torch.no_grad():
        first()
        start = time.perf_counter()
        first()
        once = time.perf_counter() - start
    times = max(1, math.ceil(_RUN_SECONDS / max(once, 1e-6)))

    def repeat(call: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                for _ in range(times - 1):
                    call()
                return call()

        return run

    return {name: repeat(call) for name, call in callables.items()}, times


def _torchlens(model: nn.Module, inputs: fxmaps.Inputs) -> object:
    import torchlens

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchlens.trace(model, list(inputs.args), dict(inputs.kwargs) or None)


def _row(result: dict[str, Any]) -> list[str]:
    ratios = result["ratios"]
    forward = Timing(tuple(result["timings"][FORWARD]["seconds"]))
    lens = f"{ratios[TORCHLENS]:.1f}" if ratios.get(TORCHLENS) else "not installed"
    return [
        result["model"],
        str(result["maps"]),
        str(len(result["eager"])),
        f"{forward.median / result['calls_per_run'] * 1e3:.2f}",
        f"{ratios[FXMAPS]:.3f}",
        f"{ratios[HOOKS]:.3f}",
        lens,
    ]


def _version(package: str) -> str | None:
    if importlib.util.find_spec(package) is None:
        return None
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
