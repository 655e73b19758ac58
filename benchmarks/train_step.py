"""Train-step throughput on this CPU: lars_jax's jitted step against the same network in PyTorch.

    .venv/bin/python benchmarks/train_step.py [--out runs/benchmarks/train_step_cpu.json]
        [--nets small_cnn,resnet20] [--batch 256] [--rounds 7] [--steps 4] [--threads 2]

For each net (the default Fashion-MNIST `small_cnn` at 28x28x1 and the CIFAR `resnet20` at
32x32x3, both 10 classes) it times

  jax:   lars_jax's real train step: `Trainer(config, info=...).train_step` (forward, backward,
         the shard_map gradient reduction, the LARS update; jitted with the state donated) on one
         pre-built global batch of synthetic data;
  torch: the same layers in PyTorch (CPU build, `torch.set_num_threads(--threads)`, its default
         NCHW layout), the same parameter count (asserted), the same batch, and a LARS written
         here with the same math (`TorchLARS`).

Both optimizers: LARS with the paper's denominator, trust coefficient 0.001, weight decay 5e-4,
momentum 0.9, a constant learning rate 0.1; tensors with ndim <= 1 (biases, BatchNorm) excluded:
    included: ratio = eta*||w|| / (||g|| + wd*||w||) (1 where a norm is 0),
              v <- m*v + lr*ratio*(g + wd*w);   w <- w - v
    excluded: v <- m*v + lr*g;                  w <- w - v
The JAX side runs with `layer_stats_every = 0` (the per-layer diagnostics are logging, not the
optimizer; PyTorch computes none).

Rounds alternate (jax round, torch round, ...) so that load from other processes hits both
alike; each round times `--steps` steps after the warm-up and the reported figure is the median
over rounds of images/s. The load average is recorded: on a shared machine PyTorch's OpenMP
threads lose far more than XLA's when a core is taken (seen: torch 2,300 -> 400 img/s, JAX
2,100 -> 900), so only runs on an idle machine compare the frameworks. Prints a table with the
ratio jax/torch and writes JSON {"rows": [{"net", "batch", "jax_params", "torch_params",
"jax_images_per_second", "torch_images_per_second", "ratio", ...}], "machine": {...}, ...}.

PyTorch is a benchmark-only extra: `pip install torch==2.13.0` (the CPU build; see pyproject's
`bench` extra). JAX-only runs: `--no-torch`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

NETS = {  # name -> (image shape HWC, classes)
    "small_cnn": ((28, 28, 1), 10),
    "resnet20": ((32, 32, 3), 10),
}
LR, MOMENTUM, WEIGHT_DECAY, ETA = 0.1, 0.9, 5e-4, 0.001


# ----------------------------------------------------------------------------------------- JAX
def jax_runner(net: str, batch: int, seed: int = 0, dtype: str = "float32"):
    """(step_fn running n steps and blocking, param count) for lars_jax's real train step."""
    import jax

    from lars_jax import configs, data, models, parallel
    from lars_jax.train import Trainer

    shape, classes = NETS[net]
    config = configs.get_base_config()
    config.name = f"bench_{net}"
    config.data.name = "synthetic"
    config.model.name = net
    config.global_batch_size = batch
    config.optimizer.name = "lars"
    config.optimizer.lars.denominator = "paper"
    config.schedule.base_learning_rate = LR
    config.schedule.base_batch_size = batch
    config.schedule.lr_scaling = "none"
    config.schedule.warmup_epochs = 0.0
    config.schedule.decay = "constant"
    config.optimizer.lars.momentum = MOMENTUM
    config.optimizer.lars.weight_decay = WEIGHT_DECAY
    config.optimizer.lars.trust_coefficient = ETA
    config.loop.layer_stats_every = 0
    config.model.dtype = dtype
    config.seed = seed
    info = data.DatasetInfo(name=net, num_train=60000, num_eval=10000, image_shape=shape,
                            num_classes=classes)
    mesh = parallel.make_mesh(jax.devices()[:1])
    trainer = Trainer(config, mesh=mesh, info=info)
    state = trainer.sharded_init_state()
    rng = np.random.default_rng(seed)
    local = {"image": rng.standard_normal((batch, *shape), dtype=np.float32),
             "label": rng.integers(0, classes, batch, dtype=np.int32)}
    gbatch = parallel.global_batch(local, mesh)
    holder = {"state": state, "losses": []}

    def run(n: int):
        s = holder["state"]
        for _ in range(n):
            s, metrics = trainer.train_step(s, gbatch)
        jax.block_until_ready(s)
        holder["state"] = s
        if n:
            holder["losses"].append(float(metrics["loss"]))

    return run, models.param_count(state.params), holder


# --------------------------------------------------------------------------------------- torch
def torch_models():
    import torch
    from torch import nn
    import torch.nn.functional as F

    class SmallCNN(nn.Module):
        """lars_jax.models.SmallCNN: conv3x3(32)-BN-ReLU-pool2, conv3x3(64)-BN-ReLU-pool2,
        fc 128-ReLU, fc classes; convs without bias."""

        def __init__(self, in_ch=1, classes=10, widths=(32, 64), hidden=128, hw=28):
            super().__init__()
            layers, c = [], in_ch
            for w in widths:
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                           nn.ReLU(inplace=True), nn.MaxPool2d(2)]
                c = w
            self.features = nn.Sequential(*layers)
            self.fc1 = nn.Linear(c * (hw // 4) ** 2, hidden)
            self.fc2 = nn.Linear(hidden, classes)

        def forward(self, x):
            x = torch.flatten(self.features(x), 1)
            return self.fc2(F.relu(self.fc1(x)))

    class BasicBlockA(nn.Module):
        """lars_jax.models.resnet.BasicBlock with option-A shortcuts (CIFAR ResNets)."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            s = x
            if self.stride != 1 or self.extra:
                s = x[:, :, ::self.stride, ::self.stride]
                s = F.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
            return F.relu(y + s)

    class CifarResNet(nn.Module):
        def __init__(self, depth=20, classes=10):
            super().__init__()
            n = (depth - 2) // 6
            self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(16)
            blocks, c = [], 16
            for i, f in enumerate((16, 32, 64)):
                for j in range(n):
                    blocks.append(BasicBlockA(c, f, 2 if (i > 0 and j == 0) else 1))
                    c = f
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(c, classes)

        def forward(self, x):
            x = self.blocks(F.relu(self.bn(self.stem(x))))
            return self.fc(x.mean((2, 3)))

    return {"small_cnn": lambda: SmallCNN(), "resnet20": lambda: CifarResNet(20)}


class TorchLARS:
    """LARS with the paper's denominator, learning rate inside the momentum (module docstring),
    on torch's multi-tensor `_foreach` kernels like torch.optim's own default implementations."""

    def __init__(self, params, lr, momentum, weight_decay, eta):
        import torch
        self.torch = torch
        params = list(params)
        self.inc = [p for p in params if p.ndim > 1]
        self.exc = [p for p in params if p.ndim <= 1]
        self.v_inc = [torch.zeros_like(p) for p in self.inc]
        self.v_exc = [torch.zeros_like(p) for p in self.exc]
        self.lr, self.m, self.wd, self.eta = lr, momentum, weight_decay, eta

    def zero_grad(self):
        for p in self.inc + self.exc:
            p.grad = None

    def step(self):
        torch = self.torch
        with torch.no_grad():
            w = self.inc
            g = [p.grad for p in w]
            w_norm = torch.stack(torch._foreach_norm(w))
            g_norm = torch.stack(torch._foreach_norm(g))
            ratio = self.eta * w_norm / (g_norm + self.wd * w_norm)
            ratio = torch.where((w_norm == 0) | (g_norm == 0), torch.ones_like(ratio), ratio)
            d = torch._foreach_add(g, w, alpha=self.wd)
            torch._foreach_mul_(d, list((self.lr * ratio).unbind()))
            torch._foreach_mul_(self.v_inc, self.m)
            torch._foreach_add_(self.v_inc, d)
            torch._foreach_sub_(w, self.v_inc)
            # Excluded: plain momentum with the global learning rate, no weight decay.
            torch._foreach_mul_(self.v_exc, self.m)
            torch._foreach_add_(self.v_exc, [p.grad for p in self.exc], alpha=self.lr)
            torch._foreach_sub_(self.exc, self.v_exc)


def torch_runner(net: str, batch: int, seed: int = 0, dtype: str = "float32"):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    shape, classes = NETS[net]
    model = torch_models()[net]().train()
    opt = TorchLARS(model.parameters(), LR, MOMENTUM, WEIGHT_DECAY, ETA)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((batch, shape[2], shape[0], shape[1]), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, classes, batch).astype(np.int64))
    holder = {"losses": []}

    autocast = dtype == "bfloat16"

    def run(n: int):
        for _ in range(n):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()
        if n:
            holder["losses"].append(float(loss.detach()))

    return run, sum(p.numel() for p in model.parameters()), holder


# ---------------------------------------------------------------------------------------- main
def time_round(run, steps: int) -> float:
    t0 = time.perf_counter()
    run(steps)
    return time.perf_counter() - t0


def machine_info(threads: int, with_torch: bool) -> dict:
    import jax
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "load_average_1_5_15min_at_end": [round(v, 2) for v in os.getloadavg()],
            "cpu_count": os.cpu_count(), "jax": jax.__version__, "jax_device": jax.devices()[0].device_kind,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "torch_threads": threads}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in f
                                      if line.startswith("model name")), "")
    except OSError:
        pass
    if with_torch:
        import torch
        info["torch"] = torch.__version__
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="small_cnn,resnet20")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per framework")
    parser.add_argument("--steps", type=int, default=4, help="train steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="activations: JAX config.model.dtype; PyTorch CPU autocast")
    parser.add_argument("--no-torch", action="store_true", help="time the JAX side only")
    parser.add_argument("--out", default=None, help="JSON file to write (default: none)")
    args = parser.parse_args(argv)
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch
        except ImportError:
            sys.exit("benchmarks/train_step.py: PyTorch is not installed: pip install -e .[bench] "
                     "(or pass --no-torch to time the JAX side only)")
        torch.set_num_threads(args.threads)

    rows = []
    load_start = [round(v, 2) for v in os.getloadavg()]
    for net in args.nets.split(","):
        t0 = time.perf_counter()
        jrun, jparams, jhold = jax_runner(net, args.batch, dtype=args.dtype)
        jrun(1)  # compile
        compile_s = time.perf_counter() - t0
        jrun(args.warmup)
        runners = {"jax": jrun}
        tparams = None
        if with_torch:
            trun, tparams, thold = torch_runner(net, args.batch, dtype=args.dtype)
            assert jparams == tparams, f"{net}: parameter counts differ: jax {jparams} torch {tparams}"
            trun(args.warmup)
            runners["torch"] = trun
        times = {k: [] for k in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                times[name].append(time_round(run, args.steps))
        ips = {k: [args.steps * args.batch / t for t in v] for k, v in times.items()}
        row = {"net": net, "batch": args.batch, "jax_params": jparams, "torch_params": tparams,
               "jax_images_per_second": float(np.median(ips["jax"])),
               "torch_images_per_second": float(np.median(ips["torch"])) if with_torch else None,
               "jax_rounds_images_per_second": [round(v, 1) for v in ips["jax"]],
               "torch_rounds_images_per_second": [round(v, 1) for v in ips.get("torch", [])],
               "jax_compile_seconds": compile_s,
               "jax_final_loss": jhold["losses"][-1]}
        if with_torch:
            row["torch_final_loss"] = thold["losses"][-1]
        row["ratio"] = (row["jax_images_per_second"] / row["torch_images_per_second"]
                        if with_torch else None)
        rows.append(row)
        print(f"  {net}: jax {row['jax_images_per_second']:.0f} img/s"
              + (f", torch {row['torch_images_per_second']:.0f} img/s" if with_torch else ""), flush=True)

    print(f"\nTrain step (forward + backward + LARS), batch {args.batch}, median of {args.rounds} "
          f"rounds x {args.steps} steps, {os.cpu_count()} CPU cores")
    print(f"{'net':10s} {'params':>9s} {'jax img/s':>10s} {'torch img/s':>12s} {'jax/torch':>10s}")
    for r in rows:
        t = f"{r['torch_images_per_second']:12.0f}" if r["ratio"] is not None else f"{'-':>12s}"
        ratio = f"{r['ratio']:10.2f}" if r["ratio"] is not None else f"{'-':>10s}"
        print(f"{r['net']:10s} {r['jax_params']:9,d} {r['jax_images_per_second']:10.0f} {t} {ratio}")
    machine = machine_info(args.threads, with_torch)
    machine["load_average_1_5_15min_at_start"] = load_start
    result = {"rows": rows, "machine": machine,
              "settings": {"dtype": args.dtype, "rounds": args.rounds, "steps_per_round": args.steps,
                           "warmup": args.warmup,
                           "optimizer": {"name": "lars", "denominator": "paper", "lr": LR,
                                         "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
                                         "trust_coefficient": ETA, "exclude": "ndim <= 1"}},
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
