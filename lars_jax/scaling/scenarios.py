"""The scenarios the CLI prints, writes and plots: ResNet-50 by device, time vs devices, cost vs time."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from lars_jax.scaling.devices import DEVICES, Device
from lars_jax.scaling.model import IMAGENET_TRAIN, predict
from lars_jax.scaling.nets import BACKWARD_FACTOR, ModelFacts, load_models
from lars_jax.scaling.paper import PAPER_IMAGENET_TRAIN, knl_efficiency, paper_checks, table1


def device_throughput(name: str, models: dict[str, ModelFacts], knl_eff: float,
                      measured: dict[str, tuple[float, str]] | None = None) -> tuple[str, dict]:
    """How t_comp is obtained for ResNet-50 on each device: (label, predict() kwargs)."""
    measured = measured or {}
    dev = DEVICES[name]
    if name in measured:
        ips, how = measured[name]
        return f"{ips:.0f} img/s (measured here: {how})", {"images_per_second": ips}
    if dev.images_per_second:
        label, ips = max(dev.images_per_second.items(), key=lambda kv: kv[1])
        return f"{ips:.0f} img/s ({label})", {"images_per_second": ips}
    if name in ("KNL 7250", "Xeon 8160", "DGX-1"):
        return f"{knl_eff:.3f} x fp32 peak (KNL fit)", {"efficiency": knl_eff}
    # No measurement: the A100's AMP throughput as a fraction of its 16-bit peak, applied to this peak.
    a100 = DEVICES["A100"]
    frac = 2470.0 * models["resnet50"].train_flops() / a100.peak_low
    return f"{frac:.3f} x 16-bit peak (A100 AMP's fraction; assumed)", {"efficiency": frac, "precision": "low"}


def device_table(models: dict[str, ModelFacts], knl_eff: float, *, batch: int = 32768, epochs: float = 90,
                 counts: Sequence[int] = (256, 1024),
                 measured: dict[str, tuple[float, str]] | None = None) -> list[dict]:
    rows = []
    for name in DEVICES:
        if name == "DGX-1":
            continue  # a node, listed for the paper's cost comparison; P100 rows cover it
        how, kw = device_throughput(name, models, knl_eff, measured)
        for p in counts:
            pred = predict(models["resnet50"], DEVICES[name], p, batch, epochs, **kw)
            rows.append({**pred.as_dict(), "throughput_source": how})
    return rows


def time_vs_devices(model: ModelFacts, device: Device, batches: Sequence[int], epochs: float, *,
                    min_per_device: int = 16, max_devices: int = 4096, **kwargs) -> dict[int, list[dict]]:
    """Time to train vs device count for each batch; p runs over powers of 2 with B / p >= min_per_device."""
    out = {}
    for b in batches:
        ps = [2 ** k for k in range(0, 13) if 2 ** k <= min(max_devices, b // min_per_device)]
        out[b] = [predict(model, device, p, b, epochs, **kwargs).as_dict() for p in ps]
    return out


def run(measured: dict[str, tuple[float, str]] | None = None, models_path: str | None = None) -> dict:
    """Everything the CLI prints, writes and plots, as one JSON-able dict."""
    models = load_models(models_path)
    eff = knl_efficiency(models)
    knl = DEVICES["KNL 7250"]
    rn50 = models["resnet50"]
    cost_curves = {}
    for name in ("P100", "V100", "A100", "KNL 7250"):
        how, kw = device_throughput(name, models, eff, measured)
        rows = [predict(rn50, DEVICES[name], p, 32768, 90, **kw).as_dict()
                for p in (8, 32, 128, 256, 512, 1024, 2048)]
        cost_curves[f"{name} ({how.split(' (')[0]})"] = rows
    return {
        "constants": {"imagenet_train": IMAGENET_TRAIN, "paper_imagenet_train": PAPER_IMAGENET_TRAIN,
                      "backward_factor": BACKWARD_FACTOR, "grad_dtype": "float32"},
        "models": {k: dataclasses.asdict(v) for k, v in models.items()},
        "devices": {k: dataclasses.asdict(v) for k, v in DEVICES.items()},
        "knl_efficiency": eff,
        "table1": table1(models["alexnet_bn"], knl, efficiency=eff),
        "paper_checks": paper_checks(models),
        "paper_checks_full_overlap": paper_checks(models, overlap=1.0),
        "devices_table": device_table(models, eff, measured=measured),
        "sweep": time_vs_devices(models["alexnet_bn"], knl, (512, 2048, 8192, 32768), 100, efficiency=eff,
                                 algorithm="ring", min_per_device=1),
        "cost_curves": cost_curves,
        "measured_throughput": measured or {},
    }
