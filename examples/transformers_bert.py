"""A transformers model built from a config (random weights, nothing downloaded), end to end.

``BertModel`` takes keyword arguments, wraps its ``forward`` in ``**kwargs`` decorators and
picks its attention code at run time, so torch.fx cannot trace it whole. Given the inputs
as the model takes them (a dict of keyword arguments), fxmaps runs it once: it traces every
module torch.fx can follow, runs the rest as Python, and records what that Python did.
Every linear layer is a node; ``g.eager`` says which module calls ran as Python and why.
Run: ``python examples/transformers_bert.py``.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertModel

import fxmaps


def main() -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    model = BertModel(config).eval()
    ids = torch.randint(0, 100, (2, 12))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    graph = fxmaps.analyze(model, inputs)
    print(graph)
    print("ran as Python:", [f"{r.name} ({r.module_type})" for r in graph.eager][:4], "...")
    layer = graph.layers("linear")[0]
    print("first linear:", layer.name, layer.out_shape)

    maps = fxmaps.extract(graph, inputs, layers="encoder.layer.1.*")
    print("encoder.layer.1:", {name: tuple(m.shape) for name, m in maps.items() if m.dim() == 3})


if __name__ == "__main__":
    main()
