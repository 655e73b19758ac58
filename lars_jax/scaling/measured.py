"""ResNet-50 training throughput measured with our own train step on real accelerators.

The recorded measurement ships with the package as data/scaling_gpu.json (a copy of
benchmarks/results/scaling_gpu.json, written by benchmarks/calibrate_scaling.py
--resnet50-throughput); the scaling CLI's --measured reads a newer one.
"""
from __future__ import annotations

import json
import os

MEASURED_GPU_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "scaling_gpu.json")


def measured_throughput(path: str = MEASURED_GPU_JSON) -> dict[str, tuple[float, str]]:
    """{device: (img/s, how it was measured)} from a scaling_gpu.json; {} when the file is absent."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        doc = json.load(f)
    out = {}
    for name, ips in doc.get("resnet50_images_per_second", {}).items():
        how = doc.get("measured_how", {}).get(name)  # a device measured elsewhere says how
        if how is None:  # else: this file's fastest row
            row = max(doc.get("rows", [{}]), key=lambda r: r.get("images_per_second", 0))
            how = (f"{row.get('dtype', '?')}, our train step, batch {row.get('batch', '?')}, "
                   f"jax {doc.get('jax', '?')}, {os.path.basename(path)}")
        out[name] = (float(ips), how)
    return out
