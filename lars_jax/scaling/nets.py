"""The networks the model trains: forward FLOPs per example and parameter count.

The built-in table is data/model_flops.json, shipped with the package: a copy of
benchmarks/results/model_flops.json (XLA's cost analysis, written by benchmarks/model_flops.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

BACKWARD_FACTOR = 3.0  # training FLOPs = 3 x forward (backward ~ 2 x forward: e.g. Kaplan et al., arXiv 2001.08361)
BYTES_PER_VALUE = {"float32": 4, "bfloat16": 2, "float16": 2}
MODEL_FLOPS_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "model_flops.json")


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    name: str
    input_shape: tuple  # (H, W, C)
    num_classes: int
    forward_flops: float  # per example, XLA cost analysis (a multiply-add counts 2)
    params: int
    analytic_macs: float | None = None  # conventional MAC count, where known
    source: str = ""

    def train_flops(self, backward_factor: float = BACKWARD_FACTOR) -> float:
        return self.forward_flops * backward_factor

    def gradient_bytes(self, dtype: str = "float32") -> float:
        return self.params * BYTES_PER_VALUE[dtype]


def _read_rows(path: str, source: str, models: dict[str, ModelFacts]) -> dict[str, ModelFacts]:
    """`models` with the default-variant rows of a model_flops.json written by benchmarks/model_flops.py."""
    models = dict(models)
    with open(path) as f:
        doc = json.load(f)
    for row in doc.get("rows", []):
        if row.get("kwargs") or "name" not in row or "gflops" not in row:
            continue  # a non-default variant (e.g. ResNet-50 v1) or a row of another form
        name, shape = row["name"], tuple(row.get("input", ()))
        default = models.get(name)
        if default is not None and shape != default.input_shape:
            continue  # the same net at another input size (e.g. AlexNet padded from 224)
        macs = row.get("analytic_gmacs")
        models[name] = ModelFacts(name, shape, int(row.get("num_classes", 0)), row["gflops"] * 1e9,
                                  int(row["params"]), macs * 1e9 if macs else None,
                                  f"{source} (jax {doc.get('jax', '?')}, {doc.get('backend', '?')})")
    return models


def builtin_models() -> dict[str, ModelFacts]:
    """The table shipped with the package (a copy of benchmarks/results/model_flops.json)."""
    return _read_rows(MODEL_FLOPS_JSON, "benchmarks/results/model_flops.json, shipped as "
                                        "lars_jax/scaling/data/model_flops.json", {})


def load_models(path: str | None = None) -> dict[str, ModelFacts]:
    """The built-in table, overridden by the default-variant rows of `path` when it exists."""
    models = builtin_models()
    if path and os.path.exists(path):
        models = _read_rows(path, path, models)
    return models


def compute_model_facts(name: str, input_shape: Sequence[int], num_classes: int) -> ModelFacts:
    """Recomputes a row with lars_jax.models (imports jax; a few seconds for ResNet-50)."""
    import jax
    import jax.numpy as jnp

    from lars_jax import models

    model = models.create_model(name, num_classes=num_classes)
    shape = (2, *input_shape)
    flops = models.forward_flops(model, shape)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
    return ModelFacts(name, tuple(input_shape), num_classes, flops, models.param_count(variables["params"]),
                      None, "lars_jax.models.forward_flops, computed now")
