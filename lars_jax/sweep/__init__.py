"""Batch-size sweep: does LARS keep small-batch accuracy at a very large batch where SGD does not?

    python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_batch.py --workdir runs/sweep \
        [--out runs/sweep] [--quick]

A sweep config (`experiments/sweeps/*.py`) names a base cell config, the batch sizes, the seeds and
the optimizers; each optimizer is a set of config overrides (optimizer, base LR, scaling rule) plus
`lr_multipliers`, the LR search done at every batch size (a single 1.0 = the scaling rule alone).
Every cell is a normal run of `train.train_and_evaluate` in its own workdir
(`WORKDIR/cells/<cell>/`: results.json, config.json, TensorBoard events), run one after another in
this process. Every cell trains on the train split less its validation part
(`base.data.validation_examples`, required): at each (optimizer, batch) the search runs with the
first seed and the multiplier with the best final validation accuracy is selected; the extra seeds
then run with the selected LR at the batch sizes in `extra_seed_batch_sizes`. The test split
chooses nothing: the tables report its accuracy for the selected LR, every seed. Any field can be
overridden on the command line (`--config.batch_sizes='(256,)'`, as for lars_jax.main). Before
the first cell runs, the sweep's fields and every (optimizer, batch) cell's config are checked: a
mistake is one line naming the field (exit 2), not a failure hours later at the cell it breaks.

A finished cell is skipped and an interrupted one resumes from its checkpoint, so rerunning the
command resumes the sweep; a cell's directory name carries a hash of its config, so a changed
config runs new cells. A diverged cell (NaN/Inf loss) is recorded as diverged, not retried. After
every cell the outputs are rewritten in `--out` (default: the workdir): `results.md` and
`results.json` (every cell, the per-batch summary and the noise-scale prediction),
`accuracy_vs_batch.png`, `trust_ratios.png` (per-layer LARS trust ratios of the LARS runs at the
smallest and largest batch) and `noise_scale.png` (B_simple over training at the smallest batch),
read back from the cells' TensorBoard events. `--quick` refuses an `--out` that holds a full
sweep's results (the recorded ones in benchmarks/results/).

  cells.py    cells, their configs and run order;  run.py      running and resuming cells
  summary.py  the selected LR per (optimizer, batch); report.py results.json / results.md
  critical_batch.py  B_crit fitted to steps-to-target, B_simple, the knee
  plots.py    the three PNGs;   events.py  TensorBoard scalars read back;   cli.py  the command line

Sweeps: experiments/sweeps/fashion_mnist_batch.py (the `mlp` of lars_jax/models/small.py, a
784-512-256-10 perceptron with BatchNorm, ~20,000 img/s on 2 CPU cores) and
fashion_mnist_cnn_batch.py (the small CNN, ~2,000 img/s: fewer epochs and batch sizes).
"""
import lars_jax

lars_jax.quiet_tensorflow()

from lars_jax.sweep.cells import (Cell, apply_quick, cell_config, extra_seed_batches, optimizer_config,  # noqa: E402
                                  plan, selection_score)
from lars_jax.sweep.cli import main  # noqa: E402
from lars_jax.sweep.events import read_scalars  # noqa: E402
from lars_jax.sweep.plots import (ACCURACY_PNG, NOISE_PNG, TRUST_PNG, plot_accuracy,  # noqa: E402
                                  plot_noise_scale, plot_trust_ratios, trust_ratio_formula, trust_ratio_runs)
from lars_jax.sweep.report import (RESULTS_JSON, RESULTS_MD, SCHEMA_VERSION, columns, markdown,  # noqa: E402
                                   write_outputs)
from lars_jax.sweep.run import run_cell, run_sweep  # noqa: E402
from lars_jax.sweep.summary import summarise  # noqa: E402
