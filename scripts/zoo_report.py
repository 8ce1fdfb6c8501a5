"""Survey the model zoos with fxmaps and publish the results as docs/zoo.md and docs/zoo.json.

Each model goes through ``analyze`` -> ``extract`` (checked against forward hooks) ->
``render_graph(collapse="blocks")`` exactly as ``tests/zoo`` checks it (see
``tests/zoo/survey.py``), in a worker process of its own, with a time limit: a hang, a
crash or running out of memory costs one row, not the run.

    python scripts/zoo_report.py                      # every zoo, docs/zoo.md and docs/zoo.json
    python scripts/zoo_report.py --zoo timm --jobs 2  # one zoo, two workers
    python scripts/zoo_report.py --models 'vit_*' --update   # re-run some rows, keep the others
    python scripts/zoo_report.py --pick-timm          # re-pick the timm sample (slow: builds all)

With ``--jobs N`` each worker uses ``cores // N`` torch threads; timings are per model,
wall clock, in the worker.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fnmatch
import json
import multiprocessing as mp
import os
import platform
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.zoo.catalog import ZOOS, ZooModel, zoo_models  # noqa: E402

DOCS = ROOT / "docs"
SAMPLE_FILE = ROOT / "tests" / "zoo" / "timm_sample.py"
MODELS_PER_WORKER = 16  # a fresh worker now and then: no memory creep across models
EXPLAINED: dict[str, str] = {}
"""Why a model fails, beyond its error, where the survey found out."""
_SIZE_WORDS = ("tf", "vit", "eva", "eva02", "deit3", "nf")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.pick_timm:
        _pick_timm(args.timm_cap, args.timm_extra)
        return 0
    entries = [
        entry
        for zoo in args.zoo
        for entry in zoo_models(zoo)
        if not args.models or any(fnmatch.fnmatch(entry.name, p) for p in args.models)
    ]
    previous = _load(args.json) if args.update else {}
    rows = dict(previous)
    start = time.perf_counter()
    for row in _run_all(entries, args.jobs, args.timeout):
        rows[(row["zoo"], row["model"])] = row
        _write_json(args.json, rows)
        status = "ok" if row["ok"] else f"FAILED {row['stage']}: {row['error']}: {row['cause']}"
        print(f"[{row['zoo']}] {row['model']}: {status} ({row['total_s']:.1f} s)", flush=True)
    elapsed = time.perf_counter() - start
    _write_markdown(args.markdown, rows, args, elapsed)
    failed = sum(not row["ok"] for row in rows.values())
    print(f"{len(rows) - failed}/{len(rows)} ok in {elapsed:.0f} s; wrote {args.markdown}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--zoo", nargs="+", choices=ZOOS, default=list(ZOOS))
    parser.add_argument("--models", nargs="+", metavar="GLOB", help="only these models")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per model")
    parser.add_argument("--json", type=Path, default=DOCS / "zoo.json")
    parser.add_argument("--markdown", type=Path, default=DOCS / "zoo.md")
    parser.add_argument(
        "--update", action="store_true", help="keep the rows of --json that this run does not redo"
    )
    parser.add_argument("--pick-timm", action="store_true", help=f"rewrite {SAMPLE_FILE.name}")
    parser.add_argument("--timm-cap", type=float, default=60e6, help="parameters, for --pick-timm")
    parser.add_argument("--timm-extra", type=int, default=7, help="family size per extra pick")
    return parser


# -- workers ----------------------------------------------------------------------------------


def _worker(conn: Connection, threads: int) -> None:
    """Survey the models sent over ``conn`` one by one; ``None`` ends the worker."""
    import torch

    from tests.zoo.survey import survey

    torch.set_num_threads(threads)
    while True:
        entry = conn.recv()
        if entry is None:
            return
        conn.send(survey(entry).as_dict())


@dataclass
class _Slot:
    process: mp.process.BaseProcess
    conn: Connection
    entry: ZooModel | None = None
    deadline: float = 0.0
    done: int = 0


def _run_all(entries: list[ZooModel], jobs: int, timeout: float) -> Iterable[dict[str, Any]]:
    """Each entry's record, as workers finish them; hangs and crashes become failed rows."""
    context = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    queue = collections.deque(entries)
    slots: list[_Slot] = []

    def start() -> _Slot:
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(child, threads), daemon=True)
        process.start()
        child.close()
        return _Slot(process, parent)

    try:
        while queue or any(slot.entry for slot in slots):
            while queue and len([s for s in slots if s.entry is None]) == 0 and len(slots) < jobs:
                slots.append(start())
            for slot in slots:
                if slot.entry is None and queue:
                    slot.entry = queue.popleft()
                    slot.deadline = time.monotonic() + timeout
                    slot.conn.send(slot.entry)
            busy = [slot for slot in slots if slot.entry is not None]
            ready = wait([s.conn for s in busy], timeout=1.0)
            for slot in busy:
                row = _collect(slot, ready, timeout)
                if row is None:
                    continue
                yield row
                slot.entry = None
                slot.done += 1
                if not slot.process.is_alive() or slot.done >= MODELS_PER_WORKER:
                    _stop(slot)
                    slots.remove(slot)
    finally:
        for slot in slots:
            _stop(slot)


def _collect(slot: _Slot, ready: list[Any], timeout: float) -> dict[str, Any] | None:
    assert slot.entry is not None
    if slot.conn in ready:
        try:
            row: dict[str, Any] = slot.conn.recv()
            return row
        except (EOFError, OSError):  # the worker died: a crash, or killed for memory
            slot.process.join(5)
            code = slot.process.exitcode
            return _failed(slot.entry, "crashed", "WorkerDied", f"the worker exited with {code}")
    if time.monotonic() > slot.deadline:
        slot.process.kill()
        slot.process.join(5)
        return _failed(slot.entry, "timeout", "Timeout", f"no result within {timeout:.0f} s")
    return None


def _stop(slot: _Slot) -> None:
    if slot.process.is_alive():
        with contextlib.suppress(BrokenPipeError, OSError):
            slot.conn.send(None)
        slot.process.join(10)
    if slot.process.is_alive():
        slot.process.kill()
        slot.process.join(5)
    slot.conn.close()


def _failed(entry: ZooModel, stage: str, error: str, cause: str) -> dict[str, Any]:
    from tests.zoo.survey import Record

    record = Record(entry.zoo, entry.name, stage=stage, error=error, cause=cause)
    return record.as_dict()


# -- output -----------------------------------------------------------------------------------


def _load(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {(row["zoo"], row["model"]): row for row in data["models"]}


def _write_json(path: Path, rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    ordered = [rows[key] for key in _ordered(rows)]
    data = {"environment": _environment(), "models": ordered}
    _write(path, json.dumps(data, indent=1) + "\n")


def _ordered(rows: dict[tuple[str, str], dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted(rows, key=lambda key: (ZOOS.index(key[0]), key[1]))


def _environment() -> dict[str, str]:
    import timm
    import torch
    import torchvision

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _write_markdown(
    path: Path, rows: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace, took: float
) -> None:
    by_zoo: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for key in _ordered(rows):
        by_zoo[key[0]].append(rows[key])
    env = _environment()
    lines = [
        "# fxmaps on the model zoos",
        "",
        "Models torch.fx cannot trace whole (transformers, diffusers, whole detectors, RAFT,",
        "students' code), captured and checked call by call against forward hooks, are on",
        "[zoo_any.md](zoo_any.md) (`python scripts/any_model_report.py`).",
        "",
        "Every model is built with random weights (nothing is downloaded) and goes through",
        '`analyze` with one sample -> `extract` -> `render_graph(collapse="blocks")`:',
        "",
        "- the traced graph's output equals the model's own output, bit for bit;",
        "- `extract` returns the first and last conv, a downsample, the first and last add and",
        "  linear, an attention node and up to three opaque modules; each module node's map",
        "  equals, bit for bit, what a forward hook on that module call saw;",
        "- the collapsed diagram's DOT source builds, and the full one marks exactly the",
        "  opaque modules.",
        "",
        "The zoos: every torchvision classification model; the `.backbone` of every",
        "torchvision detection model; every segmentation model, whole and its `.backbone`;",
        "every torchvision video model; and a timm sample, the smallest models of every timm",
        "family (one per architecture stem, more for large families; `tests/zoo/timm_sample.py`).",
        "Inputs are one sample at the model's default size, or smaller (128 or 112 pixels, 8",
        "frames of 112) where the model runs on it. `tests/zoo/` holds the same checks as",
        "tests (`make test-zoo`); this page and [zoo.json](zoo.json) come from",
        "`python scripts/zoo_report.py --jobs 2`, each model in a worker process with a time",
        "limit.",
        "",
        f"torch {env['torch']}, torchvision {env['torchvision']}, timm {env['timm']}, "
        f"Python {env['python']}, {env['machine']}; {args.jobs} worker(s), {took / 60:.0f} "
        "minutes. Times are wall clock on a shared machine: read them as sizes, not benchmarks.",
        "",
        "| zoo | models | ok | failed | success | analyse time (sum) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for zoo, zoo_rows in by_zoo.items():
        ok = sum(row["ok"] for row in zoo_rows)
        total = sum(row["analyze_s"] for row in zoo_rows)
        lines.append(
            f"| {zoo} | {len(zoo_rows)} | {ok} | {len(zoo_rows) - ok} | "
            f"{100 * ok / len(zoo_rows):.1f}% | {total:.0f} s |"
        )
    if by_zoo.get("timm"):
        lines += ["", _timm_coverage([row["model"] for row in by_zoo["timm"]])]
    failures = [row for zoo_rows in by_zoo.values() for row in zoo_rows if not row["ok"]]
    lines += ["", "## Failures", ""]
    if failures:
        lines += ["| zoo | model | stage | error | cause |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['zoo']} | {r['model']} | {r['stage']} | {r['error']} | {_cell(r['cause'])} |"
            for r in failures
        ]
        explained = [r["model"] for r in failures if r["model"] in EXPLAINED]
        lines += [""] + [f"- **{model}**: {EXPLAINED[model]}" for model in explained]
    else:
        lines.append("None.")
    opaque = [row for zoo_rows in by_zoo.values() for row in zoo_rows if row["opaque"]]
    lines += ["", "## Opaque modules", ""]
    if opaque:
        lines.append("Modules fxmaps could not trace into, kept whole as one node each, and why:")
        lines.append("")
        for row in opaque:
            counts = collections.Counter(item.rpartition(" (")[2][:-1] for item in row["opaque"])
            for module_type, count in counts.items():
                why = row.get("opaque_why", {}).get(module_type, "")
                lines.append(f"- {row['model']}: {count} × `{module_type}`: {_cell(why)}")
    else:
        lines.append("None.")
    for zoo, zoo_rows in by_zoo.items():
        lines += ["", f"## {zoo}", "", *_zoo_table(zoo_rows)]
    _write(path, "\n".join(lines) + "\n")


def _timm_coverage(models: list[str]) -> str:
    import timm
    from timm.models import _registry

    listed = timm.list_models()
    every = {_registry._model_to_module[name] for name in listed}
    families = {_registry._model_to_module.get(name) for name in models}
    return (
        f"The timm sample covers {len(families & every)} of the {len(every)} model families "
        f"of timm's {len(listed)} models."
    )


def _zoo_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | input | nodes | collapsed | conv | downsample | residual | linear | "
        "attention | opaque | autowrapped | analyse s | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in rows:
        shape = "×".join(str(d) for d in row["input_shape"])
        opaque = _cell(", ".join(row["opaque"][:3]) + (" …" if len(row["opaque"]) > 3 else ""))
        opaque = f"{len(row['opaque'])}: {opaque}" if row["opaque"] else ""
        result = "ok" if row["ok"] else f"**{row['stage']}**: {row['error']}: {_cell(row['cause'])}"
        lines.append(
            f"| {row['model']} | {shape} | {row['nodes']} | {row['collapsed_nodes']} | "
            f"{row['conv']} | {row['downsample']} | {row['residual']} | {row['linear']} | "
            f"{row['attention']} | {opaque} | {len(row['autowrapped']) or ''} | "
            f"{row['analyze_s']:.2f} | {result} |"
        )
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- the timm sample --------------------------------------------------------------------------


def _pick_timm(cap: float, per_extra: int) -> None:
    """The smallest model per architecture stem of each timm family, written to SAMPLE_FILE.

    A family (timm's model module) gets one pick plus one per ``per_extra`` models it
    holds (at most five more), each from a stem not picked yet; models over ``cap``
    parameters are picked only when the family has nothing smaller.
    """
    import warnings

    import timm
    import torch
    from timm.models import _registry

    families: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    for name in timm.list_models():
        if name.startswith("test_"):
            continue  # timm's own tiny test models
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False)
        params = sum(p.numel() for p in model.parameters())
        families[_registry._model_to_module[name]].append((params, name))
    picked: list[tuple[str, str]] = []
    for family, models in sorted(families.items()):
        extra = min(5, len(models) // per_extra)
        stems: set[str] = set()
        for params, name in sorted(models):
            if name in dict(picked) or _stem(name) in stems:
                continue
            if stems and params > cap:
                break
            stems.add(_stem(name))
            picked.append((name, family))
            if len(stems) > extra:
                break
    _write_sample(sorted(picked, key=lambda item: (item[1], item[0])))


def _stem(name: str) -> str:
    tokens = name.split("_")
    first = tokens[0]
    if first in _SIZE_WORDS and len(tokens) > 1:
        first = f"{first}_{tokens[1]}"
    return re.sub(r"\d+$", "", first)


def _write_sample(picked: list[tuple[str, str]]) -> None:
    text = SAMPLE_FILE.read_text()
    head = text[: text.index("TIMM_SAMPLE")]
    body = "".join(f'    "{name}",  # {family}\n' for name, family in picked)
    _write(SAMPLE_FILE, f"{head}TIMM_SAMPLE: tuple[str, ...] = (\n{body})\n")
    print(f"{len(picked)} timm models written to {SAMPLE_FILE}")


if __name__ == "__main__":
    sys.exit(main())
