"""Time / communication / cost model of synchronous data-parallel training (the paper's argument).

    python -m lars_jax.scaling [--out runs/scaling]

You et al. ("ImageNet Training in Minutes") argue quantitatively: for a fixed number of epochs a
larger batch B means fewer iterations (epochs * N / B), hence fewer gradient all-reduces; with
enough devices the time per iteration stays flat, so the total time falls. This package makes that
argument a model a user can run before buying hardware. Pure Python at import; jax is only
imported to recompute FLOPs for a model not in the table, matplotlib only to draw the plot.

  model.py      the formulas: iterations, all-reduce, iteration time, predict, fit_efficiency
  nets.py       forward FLOPs and parameters per network (data/model_flops.json)
  devices.py    the device catalogue, every number with its source (data/devices.json)
  measured.py   ResNet-50 img/s measured with our train step (data/scaling_gpu.json)
  paper.py      the paper's figures and the checks of the model against them
  scenarios.py  what the CLI computes; report.py its tables; figure.py scaling.png; cli.py the CLI
"""
from lars_jax.scaling.cli import main
from lars_jax.scaling.devices import DEVICES, DEVICES_JSON, Device, load_devices
from lars_jax.scaling.measured import MEASURED_GPU_JSON, measured_throughput
from lars_jax.scaling.model import (ALGORITHMS, IMAGENET_TRAIN, Prediction,
                                    allreduce_time, fit_efficiency, hierarchical_allreduce_time, iteration_time,
                                    iterations, predict, ring_allreduce_time, solve, tree_allreduce_time)
from lars_jax.scaling.nets import (BACKWARD_FACTOR, BYTES_PER_VALUE, MODEL_FLOPS_JSON, ModelFacts, builtin_models,
                                   compute_model_facts, load_models)
from lars_jax.scaling.paper import (PAPER, PAPER_IMAGENET_TRAIN, cost_comparison, five_second_bound,
                                    knl_efficiency, paper_checks, table1)
from lars_jax.scaling.figure import plot
from lars_jax.scaling.report import format_seconds, format_tables, format_usd
from lars_jax.scaling.scenarios import device_table, device_throughput, run, time_vs_devices

_fmt_s, _fmt_usd = format_seconds, format_usd  # the names notebooks/scaling.ipynb calls
