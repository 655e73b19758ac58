"""The cost model: iterations, gradient all-reduce, iteration time, total time, device-hours, cost.

Per iteration on p devices with a global batch B (b = B / p images per device):
  t_comp = b * F_train / (peak * efficiency)     or  b / (images per second per device)
           F_train = F_forward * BACKWARD_FACTOR (3: backward ~ 2x forward, the usual convention)
  t_comm = all-reduce of the gradient (parameter count x bytes per value):
           ring:          2 (p-1)/p * bytes / bw + 2 (p-1) * alpha
           tree:          2 ceil(log2 p) * (alpha + bytes / bw)   (binomial reduce + broadcast)
           hierarchical:  ring reduce-scatter / all-gather inside each node of g devices, ring
                          all-reduce of bytes / g across nodes, the node's network shared by g
  t_iter = t_comp + max(0, t_comm - overlap * t_backward),  t_backward = (2/3) t_comp
  total  = iterations * t_iter;  device-hours = total * p / 3600;  hardware cost = p * price
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Callable

from lars_jax.scaling.nets import BACKWARD_FACTOR, ModelFacts

if TYPE_CHECKING:
    from lars_jax.scaling.devices import Device

IMAGENET_TRAIN = 1_281_167  # ILSVRC-2012 train images
ALGORITHMS = ("ring", "tree", "hierarchical")


def iterations(epochs: float, batch: int, n_train: float = IMAGENET_TRAIN) -> float:
    """epochs * N / B (fractional; the paper's Table 1 writes 100 * 1.28M / B)."""
    return epochs * n_train / batch


def ring_allreduce_time(nbytes: float, p: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce (reduce-scatter + all-gather), seconds: 2(p-1)/p * bytes / bw + 2(p-1) * alpha."""
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
    hardware_cost: float | None  # USD
    cloud_cost: float | None  # USD
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
