"""Batch-size sweep on Fashion-MNIST: does LARS hold accuracy at a very large batch?

.venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_batch.py \
    --workdir runs/sweep_fashion_mnist --out benchmarks/results/sweep_fashion_mnist
(records the results the docs show; rerunning skips finished cells). A smoke run: add
--quick and keep the outputs in the workdir (e.g. --workdir runs/sweep_quick, no --out): --quick
refuses an --out that holds the full sweep's results.

The claim tested (You et al., "ImageNet Training in Minutes"; You, Gitman, Ginsburg, arXiv
1708.03888): for the same number of epochs, LARS at a very large batch stays near the small-batch
accuracy, where SGD with linear LR scaling and warmup (Goyal et al., arXiv 1706.02677) loses
accuracy. Nado et al. (arXiv 2102.06356) add: a tuned Nesterov baseline closes much of the gap.

Grid: batch 256, 1k, 4k, 16k x three optimizers, 15 epochs each, the same model and schedule shape
(linear warmup for 2 epochs, then polynomial decay with power 2 to 0).
- "SGD, linear scaling + warmup": heavy-ball momentum 0.9, LR 0.1 x B/256 (Goyal et al.); no search.
- "LARS": trust coefficient 0.001, momentum 0.9 (the paper); peak LR 8 at every batch
  (lr_scaling "none": the trust ratio sets each layer's step, as in experiments/fashion_mnist.py,
  whose LR 8 was tuned on the small CNN, not here); search x{1/2, 1, 2}.
- "Nesterov": momentum 0.9, LR 0.1 x sqrt(B/256) (square-root scaling, Krizhevsky 2014 / Hoffer et
  al. 2017); search x{1/2, 1, 2}: the same three trials as LARS, the "small LR search" of Nado et al.
- Validation: the last 10,000 of the 60,000 training images are held out (config.data
  .validation_examples); every cell trains on the first 50,000. The search selects by first-seed
  validation accuracy; seeds 1 and 2 then rerun the selected LR at the smallest and largest batch
  (3 seeds there, 1 elsewhere). The test split chooses nothing: the tables report it.
- Weight decay 5e-4 (L2, not applied to biases / BatchNorm, for every optimizer), BatchNorm over
  groups of 32 examples at every batch (the paper normalises per worker), no augmentation.
- The gradient noise scale: at batch 256 each step is cut into 8 microbatches of one BN group each
  (the same math), so every batch-256 run measures B_simple from 32- and 256-example gradients.

What was traded to fit a quarter of an hour on 2 CPU cores: the model is `mlp` (784-512-256-10 with
BatchNorm, 535,818 parameters, ten times the small CNN's images/s here; fashion_mnist_cnn_batch.py
runs the CNN on a smaller grid); 15 epochs (the MLP reaches ~90% at batch 256 in 10); one seed
except at the two ends; 3 LR trials, 2x apart. At 16k the train split
gives only 3 steps per epoch (50,000 // 16,384; the last incomplete batch is dropped), so 15 epochs
are 45 updates: far fewer than ImageNet at 32k (39 steps per epoch, ~3,500 in 90 epochs). The grid
centres and widths were chosen after a pilot at batch 256 and 16k (10 and 15 epochs, LR factors 2
apart, selected on test accuracy, before the validation split existed: the one place the test set
informed this sweep, for both searched optimizers alike): LARS was insensitive to its LR between 2
and 16 at both batches (best 8 at 15 epochs); Nesterov's best was 0.1-0.2 at 256 and 0.4 at 16k,
where the linear rule's 6.4 reached 52% (so a search around the linear rule would have needed a
much wider grid).
"""
import ml_collections

from lars_jax.configs import get_base_config


def get_config():
    base = get_base_config()
    base.name = "fashion_mnist_batch"
    base.data.name = "fashion_mnist"
    base.model.name = "mlp"  # lars_jax.models.small.MLP (registered in lars_jax.models as "mlp")
    base.data.augment = False
    base.schedule.num_epochs = 15.0
    base.schedule.warmup_epochs = 2.0
    base.schedule.decay = "poly"
    base.schedule.poly_power = 2.0  # You et al.: gamma_t = gamma_0 (1 - t/T)^2
    base.schedule.end_learning_rate = 0.0
    for part in (base.optimizer.lars, base.optimizer.sgd):  # every optimizer of the sweep alike
        part.momentum = 0.9  # You et al.; Goyal et al.
        part.weight_decay = 5e-4  # the paper's AlexNet setting (Caffe default)
    base.optimizer.lars.trust_coefficient = 0.001  # eta, You et al.
    base.model.bn_group_size = 32  # BatchNorm statistics per 32 examples, like the paper's per-worker BN
    base.data.validation_examples = 10000  # the last 10,000 training images: the split that selects LRs
    base.loop.eval_batch_size = 2000

    c = ml_collections.ConfigDict()
    c.name = "fashion_mnist_batch"
    c.base = base
    c.batch_sizes = (256, 1024, 4096, 16384)
    c.seeds = (0,)  # every cell; the first one also selects the LR
    c.extra_seeds = (1, 2)  # at the selected LR, at the batches below
    c.extra_seed_batch_sizes = ("ends",)  # "ends": the smallest and largest batch
    c.log_points = 40  # TensorBoard points per run (train scalars and LARS layer statistics)
    c.trust_ratio_optimizer = "lars"  # trust_ratios.png: its runs at the smallest and largest batch
    c.noise_scale_batch_sizes = (256,)  # these batches' steps are cut into pieces for the noise scale:
    c.noise_scale_microbatches = 8  # 256 / 8 = 32 examples = one BN group per piece
    c.optimizer_order = ("sgd_goyal", "lars", "nesterov")
    c.optimizers = ml_collections.ConfigDict()
    c.optimizers.sgd_goyal = ml_collections.ConfigDict(dict(
        label="SGD + linear scaling + warmup",
        overrides=dict(optimizer=dict(name="sgd"),
                       schedule=dict(base_learning_rate=0.1, base_batch_size=256, lr_scaling="linear")),
        lr_multipliers=(1.0,)))
    c.optimizers.lars = ml_collections.ConfigDict(dict(
        label="LARS",
        overrides=dict(optimizer=dict(name="lars"),
                       schedule=dict(base_learning_rate=8.0, base_batch_size=256, lr_scaling="none")),
        lr_multipliers=(0.5, 1.0, 2.0)))
    c.optimizers.nesterov = ml_collections.ConfigDict(dict(
        label="Nesterov",
        overrides=dict(optimizer=dict(name="sgd", sgd=dict(nesterov=True)),
                       schedule=dict(base_learning_rate=0.1, base_batch_size=256, lr_scaling="sqrt")),
        lr_multipliers=(0.5, 1.0, 2.0)))
    # --quick: 2 batches x (1 + 1 + 2) cells of 4 steps; what tests/test_sweep.py runs.
    c.quick = dict(base=dict(schedule=dict(total_steps=4, warmup_epochs=0.0)), batch_sizes=(256, 1024),
                   extra_seeds=(), optimizers=dict(lars=dict(lr_multipliers=(1.0,)),
                                                   nesterov=dict(lr_multipliers=(0.5, 1.0))))
    return c
