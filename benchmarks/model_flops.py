"""Forward-pass FLOPs and parameters per model, from XLA's cost analysis (compile only).

    .venv/bin/python benchmarks/model_flops.py [--out runs/benchmarks/model_flops.json] [--batch 1]

To record: --out benchmarks/results/model_flops.json, then copy it to
lars_jax/scaling/data/model_flops.json, the table the scaling model ships with (tests/test_scaling.py
checks that the two agree).

Prints params, GFLOPs and GMACs (= FLOPs / 2) per image beside published MAC counts and writes
JSON. XLA skips kernel taps on zero padding, so its figures sit a few percent under counts that
include them; the "analytic" column is the conventional count (every conv/dense multiply-add,
padding taps included, read off the jaxpr), which is what published figures quote.
Published: ResNet-50 v1.5 ~4.1 GMACs and ResNet-18 ~1.8 GMACs at 224 (torchvision docs, NVIDIA
DeepLearningExamples); ResNet-50 v1 "3.8 x 10^9 FLOPs" (He et al. 2016 Table 1, multiply-adds);
bvlc_alexnet ~0.72 GMACs at 227 (Caffe model-zoo analyses such as Netscope); ResNet-20 ~41
MMACs at 32x32 (the figure quoted in the CIFAR pruning literature, not in He et al.).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common_cli import default_out, write_json  # noqa: E402
from lars_jax.models import (analytic_macs, create_model, forward_flops,  # noqa: E402
                             param_count)


# (label, registry name, kwargs, image size, channels, classes, published GMACs or None)
MODELS = [
    ("resnet50 (v1.5)", "resnet50", {}, 224, 3, 1000, 4.1),
    ("resnet50 (v1)", "resnet50", {"variant": "v1"}, 224, 3, 1000, 3.8),
    ("resnet18", "resnet18", {}, 224, 3, 1000, 1.8),
    ("alexnet", "alexnet", {}, 227, 3, 1000, 0.72),
    ("alexnet @224 (padded)", "alexnet", {}, 224, 3, 1000, 0.72),
    ("alexnet_bn", "alexnet_bn", {}, 227, 3, 1000, None),
    ("resnet20", "resnet20", {}, 32, 3, 10, 0.041),
    ("small_cnn", "small_cnn", {}, 28, 1, 10, None),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=default_out("model_flops.json"), help="JSON file to write (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=1, help="batch compiled (FLOPs are per image)")
    args = ap.parse_args(argv)

    rows = []
    print(f"{'model':22s} {'input':>9s} {'params':>12s} {'XLA GFLOPs':>10s} {'XLA GMACs':>9s} "
          f"{'analytic GMACs':>14s} {'published GMACs':>15s}")
    for label, name, kw, size, ch, nc, pub in MODELS:
        model = create_model(name, num_classes=nc, **kw)
        shape = (args.batch, size, size, ch)
        variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape),
                                                      train=False))
        t0 = time.time()
        flops = forward_flops(model, shape)
        row = dict(model=label, name=name, kwargs=kw, input=[size, size, ch], num_classes=nc,
                   params=param_count(variables["params"]), gflops=flops / 1e9,
                   gmacs=flops / 2e9, analytic_gmacs=analytic_macs(model, shape) / 1e9,
                   published_gmacs=pub, compile_s=round(time.time() - t0, 1))
        rows.append(row)
        pub_s = "-" if pub is None else f"{pub:g}"
        print(f"{label:22s} {size:>4d}x{size:<4d} {row['params']:>12,d} {row['gflops']:>10.3f} "
              f"{row['gmacs']:>9.3f} {row['analytic_gmacs']:>14.3f} {pub_s:>15s}", flush=True)

    result = dict(rows=rows, jax=jax.__version__, backend=jax.default_backend(),
                  device=str(jax.devices()[0].device_kind), python=platform.python_version(),
                  batch=args.batch, note="forward pass, train=False. gflops/gmacs: XLA cost "
                  "analysis (FLOPs = 2 x MACs, padding taps not counted, elementwise ops "
                  "included); analytic_gmacs: conv/dense multiply-adds incl. padding taps")
    write_json(args.out, result, indent=1)


if __name__ == "__main__":
    main()
