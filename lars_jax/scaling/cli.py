"""python -m lars_jax.scaling [--out runs/scaling] [--measured FILE] [--model-flops FILE] [--no-plot]

Prints the tables, writes scaling.json and scaling.png into --out (default runs/scaling, relative to
the current directory; recording into the repository is an explicit --out benchmarks/results).
Inputs default to the copies shipped with the package; --measured and --model-flops read newer ones.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import Sequence

from lars_jax.scaling.measured import MEASURED_GPU_JSON, measured_throughput
from lars_jax.scaling.report import format_tables
from lars_jax.scaling.scenarios import run

DEFAULT_OUT = os.path.join("runs", "scaling")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lars_jax.scaling",
                                     description="Time / communication / cost model of synchronous data-parallel "
                                                 "training (You et al., 'ImageNet Training in Minutes').")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for scaling.json and scaling.png")
    parser.add_argument("--measured", default=MEASURED_GPU_JSON,
                        help="scaling_gpu.json of benchmarks/calibrate_scaling.py --resnet50-throughput "
                             "(default: the recorded H100 measurement shipped with the package)")
    parser.add_argument("--model-flops", default=None,
                        help="model_flops.json of benchmarks/model_flops.py, overriding the built-in table")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    for flag, path in (("--measured", args.measured), ("--model-flops", args.model_flops)):
        if path is not None and not os.path.isfile(path):
            sys.exit(f"{flag}: no file {path}; pass an existing JSON file or drop the flag for the built-in one")
    if not args.no_plot and importlib.util.find_spec("matplotlib") is None:
        sys.exit("scaling.png needs matplotlib: pip install matplotlib (or pass --no-plot)")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(measured=measured_throughput(args.measured), models_path=args.model_flops)
    print(format_tables(result))
    os.makedirs(args.out, exist_ok=True)
    json_path, png_path = os.path.join(args.out, "scaling.json"), os.path.join(args.out, "scaling.png")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    if not args.no_plot:
        from lars_jax.scaling.figure import plot
        plot(result, png_path)
    print(f"\nwrote {json_path}" + ("" if args.no_plot else f" and {png_path}"))
    return result
