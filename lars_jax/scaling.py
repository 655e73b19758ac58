"""Time / communication / cost model of synchronous data-parallel training (the paper's argument).

    python -m lars_jax.scaling [--out benchmarks/results]

You et al. ("ImageNet Training in Minutes") argue quantitatively: for a fixed number of epochs a
larger batch B means fewer iterations (epochs * N / B), hence fewer gradient all-reduces; with
enough devices the time per iteration stays flat, so the total time falls. This module makes that
argument a model a user can run before buying hardware. Pure Python + numpy at import; jax is only
imported to recompute FLOPs for a model not in the table, matplotlib only to draw the plot.

The model, per iteration on p devices with a global batch B (b = B / p images per device):
  t_comp = b * F_train / (peak * efficiency)     or  b / (images per second per device)
           F_train = F_forward * BACKWARD_FACTOR (3: backward ~ 2x forward, PAPER.md)
  t_comm = all-reduce of the gradient (parameter count x bytes per value):
           ring:          2 (p-1)/p * bytes / bw + 2 (p-1) * alpha
           tree:          2 ceil(log2 p) * (alpha + bytes / bw)   (binomial reduce + broadcast)
           hierarchical:  ring reduce-scatter / all-gather inside each node of g devices, ring
                          all-reduce of bytes / g across nodes, the node's network shared by g
  t_iter = t_comp + max(0, t_comm - overlap * t_backward),  t_backward = (2/3) t_comp
  total  = iterations * t_iter;  device-hours = total * p / 3600;  hardware cost = p * price

F_forward is XLA's cost analysis of our models (benchmarks/results/model_flops.json, written by
benchmarks/model_flops.py; a copy is built in below). Every device number carries its source;
"assumed" marks an input no document gave. `paper_checks()` compares the model with the paper's
figures, showing which input was fitted to which figure and the error on the others.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from typing import Callable, Iterable, Sequence

IMAGENET_TRAIN = 1_281_167  # ILSVRC-2012 train images
PAPER_IMAGENET_TRAIN = 1.28e6  # the paper's Table 1 uses "1.28 million"
BACKWARD_FACTOR = 3.0  # training FLOPs = 3 x forward (backward ~ 2 x forward; PAPER.md)
BYTES_PER_VALUE = {"float32": 4, "bfloat16": 2, "float16": 2}
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(os.path.dirname(HERE), "benchmarks", "results")
MODEL_FLOPS_JSON = os.path.join(RESULTS_DIR, "model_flops.json")


# ----------------------------------------------------------------------------------------------
# Models: forward FLOPs per example and parameter count.

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


_BUILTIN_SOURCE = ("built-in copy of benchmarks/results/model_flops.json (lars_jax.models.forward_flops, "
                   "jax 0.10.2, CPU backend)")
BUILTIN_MODELS = {  # name -> (input, classes, XLA forward FLOPs, params, analytic MACs)
    "resnet50": ((224, 224, 3), 1000, 7.997334528e9, 25_557_032, 4.089184256e9),
    "resnet18": ((224, 224, 3), 1000, 3.37474176e9, 11_689_512, 1.814073344e9),
    "alexnet": ((227, 227, 3), 1000, 1.349712896e9, 60_965_224, 0.724406816e9),
    "alexnet_bn": ((227, 227, 3), 1000, 2.09166016e9, 62_379_720, 1.135256096e9),
    "resnet20": ((32, 32, 3), 10, 0.075759944e9, 269_722, 0.04055104e9),
    "small_cnn": ((28, 28, 1), 10, 0.007968522e9, 421_738, 0.004241152e9),
}


def load_models(path: str | None = MODEL_FLOPS_JSON) -> dict[str, ModelFacts]:
    """The built-in table, overridden by the default-variant rows of `path` when it exists."""
    models = {name: ModelFacts(name, shape, classes, flops, params, macs, _BUILTIN_SOURCE)
              for name, (shape, classes, flops, params, macs) in BUILTIN_MODELS.items()}
    if path and os.path.exists(path):
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
                                      f"{os.path.relpath(path, os.path.dirname(HERE))} "
                                      f"(jax {doc.get('jax', '?')}, {doc.get('backend', '?')})")
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


# ----------------------------------------------------------------------------------------------
# Devices: peak rates, networks, prices, each number with its source.

GB = 1e9
TFLOPS = 1e12


@dataclasses.dataclass(frozen=True)
class Device:
    """One compute device (a GPU, a CPU socket, a TPU chip, or a whole node where named so).

    per_node devices share one node; a ring hop inside the node runs at intra_bw, and the node's
    network (inter_bw bytes/s per direction, all NICs together) is shared by its devices.
    images_per_second: measured ResNet-50 training throughput per device {label: img/s}.
    """
    name: str
    peak_fp32: float | None  # flop/s
    peak_low: float | None  # flop/s of the fastest dense 16-bit path (tensor cores, MXU)
    per_node: int
    intra_bw: float | None  # bytes/s per direction, device to device inside a node
    inter_bw: float | None  # bytes/s per direction, per node
    latency: float  # seconds per message hop between nodes (alpha)
    intra_latency: float  # seconds per hop inside a node
    price: float | None  # USD per device (purchase)
    cloud_per_hour: float | None  # USD per device-hour
    images_per_second: dict = dataclasses.field(default_factory=dict)
    sources: dict = dataclasses.field(default_factory=dict)


_LAT = ("assumed: ~1-2 us MPI small-message latency on EDR InfiniBand / Omni-Path (vendor-quoted ~1 us); "
        "2 us used. Only the 2(p-1)*alpha term uses it: under 5% of t_comm in every case here")
_NCCL_LAT = "assumed: ~5 us per NCCL ring step inside a node (order of magnitude only)"

DEVICES: dict[str, Device] = {d.name: d for d in [
    Device("M40", 7.0 * TFLOPS, None, 4, 15.75 * GB, 12.5 * GB, 2e-6, 2e-6, None, None,
           {"fp32, derived: 90 epochs in 14 days (PAPER.md)": 90 * IMAGENET_TRAIN / (14 * 86400)},
           {"peak_fp32": "NVIDIA Tesla M40 datasheet: 7 TFLOPS single precision (boost clock)",
            "per_node/intra_bw": "assumed: 4 GPUs per host over PCIe 3.0 x16 (15.75 GB/s per direction)",
            "inter_bw": "assumed: one EDR InfiniBand 100 Gb/s NIC per node", "latency": _LAT,
            "price": "no list price confirmed: cost not modelled"}),
    Device("P100", 10.6 * TFLOPS, 21.2 * TFLOPS, 8, 80 * GB, 50 * GB, 2e-6, 5e-6, 129_000 / 8, None,
           {"fp32, derived: Goyal et al. 90 epochs in 1 h on 256 P100 (PAPER.md), end to end":
            90 * IMAGENET_TRAIN / 3600 / 256},
           {"peak_fp32/peak_low": "NVIDIA Tesla P100 (SXM2) datasheet: 10.6 TFLOPS fp32, 21.2 fp16",
            "intra_bw": "P100 datasheet: NVLink 160 GB/s bidirectional = 80 GB/s per direction over "
                        "4 links; an upper bound for a ring (DGX-1's cube mesh gives a ring fewer links)",
            "inter_bw": "NVIDIA DGX-1 datasheet: 4x EDR InfiniBand 100 Gb/s per node = 50 GB/s",
            "latency": _LAT, "intra_latency": _NCCL_LAT,
            "price": "PAPER.md: $129,000 per DGX-1 / 8 GPUs (the whole server: host CPUs, memory, "
                     "NVLink and NICs included)"}),
    Device("DGX-1", 8 * 10.6 * TFLOPS, 8 * 21.2 * TFLOPS, 1, None, 50 * GB, 2e-6, 2e-6, 129_000, None, {},
           {"peak_fp32": "8 x P100 (10.6 TFLOPS fp32 each, P100 datasheet)",
            "inter_bw": "NVIDIA DGX-1 datasheet: 4x EDR InfiniBand 100 Gb/s", "latency": _LAT,
            "price": "PAPER.md: $129,000 per DGX-1 (the paper's cost comparison)"}),
    Device("KNL 7250", 68 * 1.4e9 * 64, None, 1, None, 12.5 * GB, 2e-6, 2e-6, 2_436, None, {},
           {"peak_fp32": "Intel Xeon Phi 7250: 68 cores x 1.4 GHz x 64 fp32 flop/cycle (2 AVX-512 "
                         "units x 16 lanes x FMA) = 6.09 TFLOPS; AVX-heavy code runs below 1.4 GHz",
            "inter_bw": "Intel Omni-Path 100 Gb/s per node, as on TACC Stampede2's KNL nodes (that the "
                        "paper ran there is an assumption, not confirmed from its text)",
            "latency": _LAT, "price": "PAPER.md: $2,436 per KNL chip (the chip alone)"}),
    Device("Xeon 8160", 24 * 2.1e9 * 64, None, 2, 20.8 * GB, 12.5 * GB, 2e-6, 1e-6, None, None, {},
           {"peak_fp32": "Intel Xeon Platinum 8160: 24 cores x 2.1 GHz base x 64 fp32 flop/cycle "
                         "(2 AVX-512 FMA units) = 3.23 TFLOPS; AVX-512 clocks are lower, so an upper bound",
            "per_node/intra_bw": "assumed: 2 sockets per node (as on Stampede2's SKX nodes), one UPI "
                                 "link 10.4 GT/s = 20.8 GB/s per direction",
            "inter_bw": "assumed: Omni-Path 100 Gb/s per node", "latency": _LAT,
            "price": "no list price confirmed: cost not modelled"}),
    Device("V100", 15.7 * TFLOPS, 125 * TFLOPS, 8, 150 * GB, 50 * GB, 2e-6, 5e-6, 149_000 / 8, 24.48 / 8,
           {"mixed precision, flax ImageNet README 8x V100 (PAPER.md, derived)": 1030.0},
           {"peak_fp32/peak_low": "NVIDIA V100 SXM2 datasheet: 15.7 TFLOPS fp32, 125 tensor (fp16)",
            "intra_bw": "V100 datasheet: NVLink 300 GB/s = 150 GB/s per direction (6 links); upper bound",
            "inter_bw": "NVIDIA DGX-1 (V100) datasheet: 4x EDR InfiniBand 100 Gb/s", "latency": _LAT,
            "intra_latency": _NCCL_LAT,
            "price": "approximate: DGX-1 (V100) launch price $149,000 (NVIDIA, 2017) / 8",
            "cloud_per_hour": "approximate: AWS p3.16xlarge on-demand $24.48/h / 8 GPUs (us-east-1)"}),
    Device("A100", 19.5 * TFLOPS, 312 * TFLOPS, 8, 300 * GB, 200 * GB, 2e-6, 5e-6, 199_000 / 8, 32.77 / 8,
           {"TF32, NVIDIA DeepLearningExamples PyTorch RN50 v1.5 (PAPER.md)": 938.0,
            "AMP, NVIDIA DeepLearningExamples PyTorch RN50 v1.5 (PAPER.md)": 2470.0},
           {"peak_fp32/peak_low": "NVIDIA A100 SXM4 datasheet: 19.5 TFLOPS fp32, 312 bf16 dense",
            "intra_bw": "A100 datasheet: NVLink 600 GB/s = 300 GB/s per direction through NVSwitch",
            "inter_bw": "NVIDIA DGX A100 datasheet: 8x HDR InfiniBand 200 Gb/s = 200 GB/s",
            "latency": _LAT, "intra_latency": _NCCL_LAT,
            "price": "approximate: DGX A100 launch price $199,000 (NVIDIA, 2020) / 8",
            "cloud_per_hour": "approximate: AWS p4d.24xlarge on-demand $32.77/h / 8 GPUs"}),
    Device("H100", 67 * TFLOPS, 989 * TFLOPS, 8, 450 * GB, 400 * GB, 2e-6, 5e-6, None, 98.32 / 8, {},
           {"peak_fp32/peak_low": "NVIDIA H100 SXM5 datasheet: 67 TFLOPS fp32, 989 bf16 dense "
                                  "(1,979 with sparsity)",
            "intra_bw": "H100 datasheet: NVLink 900 GB/s = 450 GB/s per direction through NVSwitch",
            "inter_bw": "NVIDIA DGX H100 datasheet: 8x NDR 400 Gb/s = 400 GB/s", "latency": _LAT,
            "intra_latency": _NCCL_LAT, "price": "no list price confirmed: cost not modelled",
            "cloud_per_hour": "approximate: AWS p5.48xlarge on-demand $98.32/h / 8 GPUs (2023 price)"}),
    Device("TPU v3", None, 123 * TFLOPS, 4, 340e12 / 1024, 340e12 / 1024, 2e-6, 2e-6, None, 8.00 / 4, {},
           {"peak_low": "Google Cloud TPU v3 docs: 123 TFLOPS bf16 per chip (no native fp32 matmul)",
            "intra_bw/inter_bw": "Google Cloud TPU v3 docs: all-reduce bandwidth 340 TB/s per 1,024-chip "
                                 "pod = 332 GB/s per chip (2D torus ICI), used as one ring bandwidth",
            "latency": "assumed: 2 us per ICI hop", "price": "not sold: cost as cloud time only",
            "cloud_per_hour": "approximate: Cloud TPU v3-8 (4 chips) on-demand $8.00/h"}),
]}


# ----------------------------------------------------------------------------------------------
# The model.

def iterations(epochs: float, batch: int, n_train: float = IMAGENET_TRAIN) -> float:
    """epochs * N / B (fractional; the paper's Table 1 writes 100 * 1.28M / B)."""
    return epochs * n_train / batch


def ring_allreduce_time(nbytes: float, p: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce (reduce-scatter + all-gather): 2(p-1)/p * bytes / bw + 2(p-1) * alpha."""
    if p <= 1:
        return 0.0
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency


def tree_allreduce_time(nbytes: float, p: int, bandwidth: float, latency: float) -> float:
    """Binomial-tree reduce then broadcast of the whole message, unpipelined:
    2 ceil(log2 p) * (alpha + bytes / bw). Cheaper than the ring in latency, dearer in bandwidth."""
    if p <= 1:
        return 0.0
    return 2 * math.ceil(math.log2(p)) * (latency + nbytes / bandwidth)


def hierarchical_allreduce_time(nbytes: float, p: int, per_node: int, intra_bw: float, intra_latency: float,
                                inter_bw: float, latency: float) -> float:
    """Ring reduce-scatter inside each node of g = min(per_node, p) devices, g concurrent ring
    all-reduces of bytes / g across the nodes (sharing the node's network: inter_bw / g each),
    ring all-gather inside the node. g = 1 is the flat ring over nodes."""
    g = max(1, min(per_node, p))
    nodes = math.ceil(p / g)
    intra = ring_allreduce_time(nbytes, g, intra_bw, intra_latency) if g > 1 else 0.0
    inter = ring_allreduce_time(nbytes / g, nodes, inter_bw / g, latency) if nodes > 1 else 0.0
    return intra + inter


ALGORITHMS = ("ring", "tree", "hierarchical")


def allreduce_time(nbytes: float, p: int, device: Device, algorithm: str = "hierarchical") -> float:
    """The gradient all-reduce on p devices of `device`; ring/tree run over the nodes' network
    when the devices span nodes, else over the intra-node links."""
    if algorithm == "hierarchical":
        if device.per_node <= 1 or device.intra_bw is None:
            return ring_allreduce_time(nbytes, p, device.inter_bw, device.latency)
        return hierarchical_allreduce_time(nbytes, p, device.per_node, device.intra_bw, device.intra_latency,
                                           device.inter_bw, device.latency)
    within = p <= device.per_node and device.intra_bw is not None
    bw, lat = (device.intra_bw, device.intra_latency) if within else (device.inter_bw, device.latency)
    if algorithm == "ring":
        return ring_allreduce_time(nbytes, p, bw, lat)
    if algorithm == "tree":
        return tree_allreduce_time(nbytes, p, bw, lat)
    raise ValueError(f"algorithm: got {algorithm!r}; allowed: {', '.join(ALGORITHMS)}")


def iteration_time(t_comp: float, t_comm: float, overlap: float = 0.0,
                   backward_factor: float = BACKWARD_FACTOR) -> float:
    """t_comp + the part of t_comm not hidden behind backprop. overlap in [0, 1] is the fraction of
    the backward pass ((factor - 1) / factor of t_comp) during which the all-reduce can run."""
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must lie in [0, 1], got {overlap}")
    t_backward = t_comp * (backward_factor - 1) / backward_factor
    return t_comp + max(0.0, t_comm - overlap * t_backward)


@dataclasses.dataclass
class Prediction:
    model: str
    device: str
    devices: int
    batch: int
    epochs: float
    iterations: float
    per_device_batch: float
    t_comp: float  # s per iteration
    t_comm: float  # s per iteration
    t_iter: float  # s per iteration
    total_s: float
    device_hours: float
    hardware_cost: float | None
    cloud_cost: float | None
    compute: str  # how t_comp was obtained
    algorithm: str
    overlap: float

    @property
    def comm_total_s(self) -> float:
        return self.iterations * self.t_comm

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["comm_total_s"] = self.comm_total_s
        return d


def predict(model: ModelFacts, device: Device, devices: int, batch: int, epochs: float, *,
            efficiency: float | None = None, images_per_second: float | None = None,
            precision: str = "fp32", algorithm: str = "hierarchical", overlap: float = 0.0,
            grad_dtype: str = "float32", n_train: float = IMAGENET_TRAIN,
            backward_factor: float = BACKWARD_FACTOR) -> Prediction:
    """Time, device-hours and cost of `epochs` of training at global `batch` on `devices`.

    Give exactly one of efficiency (fraction of the device's peak: peak_fp32, or peak_low when
    precision="low") or images_per_second (measured training throughput per device, assumed not
    to depend on the per-device batch)."""
    if (efficiency is None) == (images_per_second is None):
        raise ValueError("give exactly one of efficiency and images_per_second")
    b = batch / devices
    if efficiency is not None:
        peak = device.peak_fp32 if precision == "fp32" else device.peak_low
        if peak is None:
            raise ValueError(f"{device.name} has no {precision} peak; pass images_per_second")
        t_comp = b * model.train_flops(backward_factor) / (peak * efficiency)
        how = f"{efficiency:.3g} x {precision} peak"
    else:
        t_comp = b / images_per_second
        how = f"{images_per_second:.4g} img/s per device"
    t_comm = allreduce_time(model.gradient_bytes(grad_dtype), devices, device, algorithm)
    t_iter = iteration_time(t_comp, t_comm, overlap, backward_factor)
    iters = iterations(epochs, batch, n_train)
    total = iters * t_iter
    hours = total * devices / 3600
    return Prediction(model.name, device.name, devices, batch, epochs, iters, b, t_comp, t_comm, t_iter, total,
                      hours, devices * device.price if device.price else None,
                      hours * device.cloud_per_hour if device.cloud_per_hour else None, how, algorithm, overlap)


def solve(f: Callable[[float], float], target: float, lo: float, hi: float, tol: float = 1e-12) -> float:
    """x in [lo, hi] with f(x) = target for a monotone f (bisection)."""
    f_lo, f_hi = f(lo) - target, f(hi) - target
    if f_lo * f_hi > 0:
        raise ValueError(f"no solution in [{lo}, {hi}]: f - target = {f_lo:.3g}, {f_hi:.3g}")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        f_mid = f(mid) - target
        if f_mid * f_lo > 0:
            lo, f_lo = mid, f_mid
        else:
            hi = mid
        if hi - lo < tol * max(1.0, abs(hi)):
            break
    return 0.5 * (lo + hi)


def fit_efficiency(target_s: float, model: ModelFacts, device: Device, devices: int, batch: int,
                   epochs: float, **kwargs) -> float:
    """The fraction of peak that makes `predict` give total time `target_s`: one free parameter."""
    return solve(lambda e: -predict(model, device, devices, batch, epochs, efficiency=e, **kwargs).total_s,
                 -target_s, 1e-4, 1.0)


# ----------------------------------------------------------------------------------------------
# The paper's figures.

PAPER = {  # PAPER.md, "Figures from the paper (confirmed)"
    "resnet50_ops": 1e18, "top_supercomputer_flops": 2e17, "m40_days": 14.0,
    "dgx1_price": 129_000, "dgx1_count": 32, "dgx1_cost": 4.1e6,
    "knl_price": 2_436, "knl_count": 512, "knl_cost": 1.2e6, "cost_ratio": 3.4,
    "alexnet_knl512_s": 24 * 60, "resnet50_knl512_s": 3600, "resnet50_knl2048_s": 20 * 60,
    "alexnet_xeon2048_s": 11 * 60, "alexnet_dgx1_b512_s": 6 * 3600 + 9 * 60,
    "alexnet_dgx1_b4096_s": 2 * 3600 + 10 * 60,
}


def five_second_bound(ops: float = PAPER["resnet50_ops"], flops: float = PAPER["top_supercomputer_flops"]) -> float:
    return ops / flops


def cost_comparison() -> dict:
    dgx = PAPER["dgx1_count"] * PAPER["dgx1_price"]
    knl = PAPER["knl_count"] * PAPER["knl_price"]
    return {"dgx1_cost": dgx, "knl_cost": knl, "ratio": dgx / knl,
            "ratio_of_rounded_figures": PAPER["dgx1_cost"] / PAPER["knl_cost"],
            "counted": "32 DGX-1 x $129,000 (complete 8-GPU servers) vs 512 KNL chips x $2,436. 512 x "
                       "$2,436 = $1.247M already exceeds the paper's ~$1.2M, so the paper counts the KNL "
                       "processors alone: no boards, memory, network, racks or power on either side "
                       "(and no network switches for the DGX-1s), which favours the KNL system."}


def table1(model: ModelFacts, device: Device, *, per_device_batch: int = 64, epochs: float = 100,
           efficiency: float = 0.2, batches: Iterable[int] = (512, 1024, 2048, 4096, 8192, 16384, 32768),
           algorithm: str = "ring", n_train: float = PAPER_IMAGENET_TRAIN) -> list[dict]:
    """The shape of the paper's Table 1: devices grow with the batch (p = B / per_device_batch),
    so t_comp stays put, t_comm per iteration grows slowly, iterations fall as 1/B."""
    rows = []
    for b in batches:
        pred = predict(model, device, max(1, b // per_device_batch), b, epochs, efficiency=efficiency,
                       algorithm=algorithm, n_train=n_train)
        rows.append(pred.as_dict())
    return rows


def _err(predicted: float, reported: float) -> float:
    return predicted / reported - 1.0


def paper_checks(models: dict[str, ModelFacts] | None = None, overlap: float = 0.0) -> dict:
    """Every paper figure the model can be set against: value, prediction, error, what was fitted."""
    models = models or load_models()
    alex, rn50 = models["alexnet_bn"], models["resnet50"]
    knl, xeon, p100 = DEVICES["KNL 7250"], DEVICES["Xeon 8160"], DEVICES["P100"]
    out: dict = {"overlap": overlap, "rows": []}
    rows = out["rows"]

    # 1. The 5-second bound and the FLOP count behind it.
    total = 90 * IMAGENET_TRAIN * rn50.train_flops()
    rows.append({"figure": "5 s bound: 1e18 ops / 2e17 flop/s", "reported": 5.0, "model": five_second_bound(),
                 "error": _err(five_second_bound(), 5.0), "fitted": "nothing (arithmetic)"})
    rows.append({"figure": "ResNet-50, 90 epochs: ~1e18 single-precision operations", "reported": 1e18,
                 "model": total, "error": _err(total, 1e18),
                 "fitted": "nothing; ours = 90 x 1,281,167 x 3 x XLA forward FLOPs (a multiply-add = 2). "
                           f"Counting a multiply-add as one operation gives {total / 2:.3g} "
                           f"({_err(total / 2, 1e18):+.0%})"})
    m40_eff = total / (PAPER["m40_days"] * 86400 * DEVICES["M40"].peak_fp32)
    rows.append({"figure": "ResNet-50, 90 epochs: 14 days on one M40", "reported": PAPER["m40_days"] * 86400,
                 "model": None, "error": None,
                 "fitted": f"implies the M40 ran at {m40_eff:.1%} of its 7 TFLOPS peak (a derived number, "
                           "not a test)", "implied_efficiency": m40_eff})

    # 2. Cost.
    cost = cost_comparison()
    rows.append({"figure": "32 DGX-1 at $129,000: ~$4.1M", "reported": PAPER["dgx1_cost"], "model": cost["dgx1_cost"],
                 "error": _err(cost["dgx1_cost"], PAPER["dgx1_cost"]), "fitted": "nothing (arithmetic)"})
    rows.append({"figure": "512 KNL at $2,436: ~$1.2M", "reported": PAPER["knl_cost"], "model": cost["knl_cost"],
                 "error": _err(cost["knl_cost"], PAPER["knl_cost"]), "fitted": cost["counted"]})
    rows.append({"figure": "KNL system 3.4x cheaper", "reported": PAPER["cost_ratio"], "model": cost["ratio"],
                 "error": _err(cost["ratio"], PAPER["cost_ratio"]),
                 "fitted": f"3.4 is $4.1M / $1.2M of the rounded figures ({cost['ratio_of_rounded_figures']:.2f}); "
                           f"the unrounded products give {cost['ratio']:.2f}"})

    # 3. KNL timings: one free parameter (KNL's fraction of fp32 peak) fitted to one figure,
    #    then tested on the others. Network inputs are fixed in advance (Omni-Path, 2 us).
    common = dict(algorithm="ring", overlap=overlap)
    cases = {
        "alexnet_knl512": ("AlexNet-BN, 100 epochs, batch 32k, 512 KNL: 24 min", alex, knl, 512, 32768, 100,
                           PAPER["alexnet_knl512_s"]),
        "resnet50_knl512": ("ResNet-50, 90 epochs, batch 32k, 512 KNL: 1 h", rn50, knl, 512, 32768, 90,
                            PAPER["resnet50_knl512_s"]),
        "resnet50_knl2048": ("ResNet-50, 90 epochs, batch 32k, 2,048 KNL: 20 min", rn50, knl, 2048, 32768, 90,
                             PAPER["resnet50_knl2048_s"]),
        "alexnet_xeon2048": ("AlexNet-BN, 100 epochs, batch 32k, 2,048 Xeon 8160: 11 min (KNL's efficiency "
                             "transferred to another chip: the weakest test)", alex, xeon, 2048, 32768, 100,
                             PAPER["alexnet_xeon2048_s"]),
    }
    out["fits"] = {}
    for fit_on in ("alexnet_knl512", "resnet50_knl512"):
        label, m, d, p, b, ep, target = cases[fit_on]
        eff = fit_efficiency(target, m, d, p, b, ep, **common)
        out["fits"][fit_on] = eff
        for key, (label, m, d, p, b, ep, reported) in cases.items():
            pred = predict(m, d, p, b, ep, efficiency=eff, **common)
            rows.append({"figure": label, "reported": reported, "model": pred.total_s,
                         "error": _err(pred.total_s, reported),
                         "fitted": (f"FITTED here: KNL efficiency = {eff:.4f} of fp32 peak" if key == fit_on else
                                    f"predicted with the efficiency fitted on {fit_on} ({eff:.4f})"),
                         "fit_on": fit_on, "is_fit": key == fit_on, "case": key,
                         "t_comp": pred.t_comp, "t_comm": pred.t_comm, "iterations": pred.iterations})

    # 4. AlexNet on one DGX-1, 100 epochs: 6 h 9 min at batch 512, 2 h 10 min at 4096.
    alexnet = models["alexnet"]
    a_it, b_it = iterations(100, 512), iterations(100, 4096)
    # Two unknowns (seconds per image per GPU, seconds of all-reduce per iteration), two figures:
    # solved exactly, so this infers inputs and tests nothing.
    per_img = (PAPER["alexnet_dgx1_b4096_s"] / b_it - PAPER["alexnet_dgx1_b512_s"] / a_it) / (512 - 64)
    comm = PAPER["alexnet_dgx1_b512_s"] / a_it - 64 * per_img
    eff_dgx = alexnet.train_flops() / per_img / p100.peak_fp32
    bw_dgx = 2 * 7 / 8 * alexnet.gradient_bytes() / comm
    out["dgx1_inferred"] = {"seconds_per_image_per_gpu": per_img, "allreduce_s": comm,
                            "implied_efficiency": eff_dgx, "implied_ring_bandwidth": bw_dgx}
    rows.append({"figure": "AlexNet, 100 epochs, 1 DGX-1: 6 h 9 min (B=512) and 2 h 10 min (B=4096)",
                 "reported": None, "model": None, "error": None,
                 "fitted": f"two figures, two unknowns, solved exactly (no test): {1 / per_img:.0f} img/s per P100 "
                           f"({eff_dgx:.0%} of fp32 peak) and {comm * 1e3:.0f} ms per all-reduce of "
                           f"{alexnet.gradient_bytes() / 1e6:.0f} MB, i.e. a ring at {bw_dgx / GB:.1f} GB/s, far "
                           f"below NVLink's 80 GB/s: the communication of 2017's single-node code, "
                           f"not the link, set the batch-512 time"})
    eff4096 = fit_efficiency(PAPER["alexnet_dgx1_b4096_s"], alexnet, p100, 8, 4096, 100, algorithm="ring")
    pred512 = predict(alexnet, p100, 8, 512, 100, efficiency=eff4096, algorithm="ring")
    rows.append({"figure": "AlexNet, 1 DGX-1, B=512: 6 h 9 min, from the B=4096 fit with NVLink's datasheet "
                           "bandwidth", "reported": PAPER["alexnet_dgx1_b512_s"], "model": pred512.total_s,
                 "error": _err(pred512.total_s, PAPER["alexnet_dgx1_b512_s"]),
                 "fitted": f"P100 efficiency {eff4096:.3f} fitted to 2 h 10 min at B=4096; the datasheet link "
                           "speed makes batch 512 look cheap: the model is only as good as its bandwidth input"})
    return out


# ----------------------------------------------------------------------------------------------
# Scenarios for the console, the JSON and the plot.

def knl_efficiency(models: dict[str, ModelFacts] | None = None) -> float:
    """KNL's fraction of fp32 peak fitted to the 24-minute AlexNet-BN run (see paper_checks)."""
    models = models or load_models()
    return fit_efficiency(PAPER["alexnet_knl512_s"], models["alexnet_bn"], DEVICES["KNL 7250"], 512, 32768, 100,
                          algorithm="ring")


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


def sweep(model: ModelFacts, device: Device, batches: Sequence[int], epochs: float, *, min_per_device: int = 16,
          max_devices: int = 4096, **kwargs) -> dict[int, list[dict]]:
    """Time to train vs device count for each batch; p runs over powers of 2 with B / p >= min_per_device."""
    out = {}
    for b in batches:
        ps = [2 ** k for k in range(0, 13) if 2 ** k <= min(max_devices, b // min_per_device)]
        out[b] = [predict(model, device, p, b, epochs, **kwargs).as_dict() for p in ps]
    return out


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s"


def _fmt_usd(x: float | None) -> str:
    return "-" if x is None else (f"${x / 1e6:.2f}M" if x >= 1e6 else f"${x:,.0f}")


def format_tables(result: dict) -> str:
    lines = []
    lines.append("Table 1 shape: AlexNet-BN, 100 epochs x 1.28M images, 64 images per KNL, ring all-reduce "
                 f"(KNL efficiency {result['knl_efficiency']:.3f})")
    lines.append(f"{'batch':>7} {'KNLs':>5} {'iterations':>11} {'t_comp':>9} {'t_comm':>9} {'t_iter':>9} "
                 f"{'comm total':>11} {'total':>10}")
    for r in result["table1"]:
        lines.append(f"{r['batch']:>7} {r['devices']:>5} {r['iterations']:>11,.0f} {r['t_comp'] * 1e3:>7.1f}ms "
                     f"{r['t_comm'] * 1e3:>7.1f}ms {r['t_iter'] * 1e3:>7.1f}ms {_fmt_s(r['comm_total_s']):>11} "
                     f"{_fmt_s(r['total_s']):>10}")
    lines.append("")
    lines.append("Paper figures vs the model (error = model / paper - 1)")
    for r in result["paper_checks"]["rows"]:
        rep, mod = r["reported"], r["model"]
        if rep is None or mod is None:
            lines.append(f"  {r['figure']}\n      {r['fitted']}")
            continue
        is_time = "min" in r["figure"] or " h" in r["figure"] or "days" in r["figure"]
        fmt = _fmt_s if is_time else (lambda v: f"{v:.4g}")
        lines.append(f"  {r['figure']}\n      paper {fmt(rep)}  model {fmt(mod)}  error {r['error']:+.1%}  "
                     f"[{r['fitted']}]")
    lines.append("")
    lines.append("ResNet-50, 90 epochs, batch 32k: time, device-hours and cost by device (hierarchical all-reduce)")
    lines.append(f"{'device':>10} {'p':>5} {'t_comp':>9} {'t_comm':>9} {'total':>9} {'dev-hours':>10} "
                 f"{'hardware':>10} {'cloud':>10}  throughput")
    for r in result["devices_table"]:
        lines.append(f"{r['device']:>10} {r['devices']:>5} {r['t_comp'] * 1e3:>7.0f}ms {r['t_comm'] * 1e3:>7.1f}ms "
                     f"{_fmt_s(r['total_s']):>9} {r['device_hours']:>10,.0f} {_fmt_usd(r['hardware_cost']):>10} "
                     f"{_fmt_usd(r['cloud_cost']):>10}  {r['throughput_source']}")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    for b, rows in result["sweep"].items():
        ax1.plot([r["devices"] for r in rows], [r["total_s"] / 3600 for r in rows], marker="o", ms=3,
                 label=f"B = {int(b):,}")
    ax1.scatter([512], [PAPER["alexnet_knl512_s"] / 3600], marker="*", s=140, color="k", zorder=5,
                label="paper: 24 min on 512 KNL at B = 32k (the fit)")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("KNL chips")
    ax1.set_ylabel("hours to train")
    ax1.set_title(f"AlexNet-BN, 100 epochs on KNL, ring all-reduce (efficiency {result['knl_efficiency']:.3f});\n"
                  "flat tails = iterations x t_comm; efficiency held constant down to 1 image per chip")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)

    for name, rows in result["cost_curves"].items():
        ax2.plot([r["total_s"] / 3600 for r in rows], [r["hardware_cost"] for r in rows], marker="o", ms=3,
                 label=name)
        for r in rows[:: max(1, len(rows) // 3)]:
            ax2.annotate(str(r["devices"]), (r["total_s"] / 3600, r["hardware_cost"]), fontsize=6)
    ax2.scatter([1.0], [PAPER["dgx1_cost"]], marker="*", s=140, color="C1", zorder=5,
                label="paper: 32 DGX-1, $4.1M, 1 h (Goyal et al.)")
    ax2.scatter([1.0], [PAPER["knl_cost"]], marker="*", s=140, color="k", zorder=5,
                label="paper: 512 KNL, $1.2M, 1 h")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("hours to train (ResNet-50, 90 epochs, B = 32k)")
    ax2.set_ylabel("hardware cost, USD (devices x price)")
    ax2.set_title("Cost vs time (labels: device count)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(measured: dict[str, tuple[float, str]] | None = None, models_path: str | None = MODEL_FLOPS_JSON) -> dict:
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
        "sweep": sweep(models["alexnet_bn"], knl, (512, 2048, 8192, 32768), 100, efficiency=eff, algorithm="ring",
                       min_per_device=1),
        "cost_curves": cost_curves,
        "measured_throughput": measured or {},
    }


def measured_throughput(results_dir: str = RESULTS_DIR) -> dict[str, tuple[float, str]]:
    """ResNet-50 training img/s per device measured with our own train step, when a benchmark
    recorded it (benchmarks/calibrate_scaling.py --resnet50-throughput -> scaling_gpu.json)."""
    path = os.path.join(results_dir, "scaling_gpu.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        doc = json.load(f)
    out = {}
    for name, ips in doc.get("resnet50_images_per_second", {}).items():
        row = max(doc.get("rows", [{}]), key=lambda r: r.get("images_per_second", 0))
        out[name] = (float(ips), f"{row.get('dtype', '?')}, our train step, batch {row.get('batch', '?')}, "
                                 f"jax {doc.get('jax', '?')}, {os.path.basename(path)}")
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=RESULTS_DIR, help="folder for scaling.json and scaling.png")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    result = run(measured=measured_throughput())
    print(format_tables(result))
    with open(os.path.join(args.out, "scaling.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    if not args.no_plot:
        plot(result, os.path.join(args.out, "scaling.png"))
    print(f"\nwrote {os.path.join(args.out, 'scaling.json')}" + ("" if args.no_plot else
                                                                    f" and {os.path.join(args.out, 'scaling.png')}"))
    return result


if __name__ == "__main__":
    main()
