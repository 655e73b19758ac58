"""The PyTorch peer of benchmarks/gpu_resnet50.py: torchvision's ResNet-50 training step on one GPU.

torchvision `resnet50()` (v1.5, the same layers and 25,557,032 parameters as lars_jax's), bf16
autocast (float32 parameters and optimizer state, as lars_jax's bfloat16 config), channels_last,
`torch.backends.cudnn.benchmark = True`, SGD with momentum 0.9 and weight decay 1e-4 (foreach),
softmax cross entropy; a synthetic batch already on the device. Modes: `compile` (torch.compile of
the model, default mode, static shapes) and `eager`. Timing as for lars_jax: rounds of steps
dispatched back to back with one synchronisation per round; the median step of the rounds.

    python3 benchmarks/torch_resnet50.py --batches 256,32 --modes compile,eager --out peer.json
Prints one `RESULT {json}` line per (mode, batch) for the caller, then a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def measure(mode: str, batch: int, *, image_size: int, steps: int, rounds: int, device: str) -> dict:
    import torch
    import torch.nn.functional as F
    import torchvision

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest algorithms, as tuned runs do
    model = torchvision.models.resnet50().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True)
    forward = torch.compile(model, dynamic=False) if mode == "compile" else model
    x = torch.randn(batch, 3, image_size, image_size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    amp_device = "cuda" if device.startswith("cuda") else "cpu"

    def step():
        with torch.autocast(amp_device, dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    t = time.perf_counter()
    losses = [float(step())]  # compiles (compile mode), tunes cuDNN (benchmark mode)
    compile_s = time.perf_counter() - t
    losses += [float(step()) for _ in range(7)]
    for _ in range(steps):  # one untimed round
        step()
    sync()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - t) / steps)
    step_s = statistics.median(times)
    return {"framework": "torch", "torch": torch.__version__, "mode": mode, "per_device_batch": batch,
            "image_size": image_size, "images_per_second": batch / step_s, "step_ms": 1e3 * step_s,
            "compile_s": compile_s, "losses": losses, "round_step_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="256")
    parser.add_argument("--modes", default="compile,eager")
    parser.add_argument("--steps", type=int, default=10, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", default="", help="JSON file to write (default: none)")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for mode in args.modes.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            try:
                row = measure(mode, batch, image_size=args.image_size, steps=args.steps, rounds=args.rounds,
                              device=device)
            except Exception as e:  # noqa: BLE001 - one failed mode must not lose the others' figures
                row = {"framework": "torch", "mode": mode, "per_device_batch": batch, "error": repr(e)[:500]}
            rows.append(row)
            print("RESULT " + json.dumps(row), flush=True)
    for r in rows:
        print(f"torch {r['mode']:8s} batch {r['per_device_batch']:4d}: " + (
            f"{r['images_per_second']:8.0f} img/s  {r['step_ms']:7.2f} ms  compile {r['compile_s']:.1f} s"
            if "error" not in r else r["error"]))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
