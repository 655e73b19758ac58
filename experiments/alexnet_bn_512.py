"""AlexNet-BN, batch 512, LARS, 100 epochs: one row of the paper's AlexNet-BN table.

You et al. 2017 ("ImageNet Training in Minutes") and You, Gitman, Ginsburg 2017 (LARS): AlexNet with
LRN replaced by BatchNorm, trained with LARS at batch 512 ... 32k for 100 epochs.
Per-row accuracies of the paper's table were not confirmed from its text; docs/experiments.md's
table lists what was.

    python -m lars_jax.main --config experiments/alexnet_bn_512.py --workdir runs/alexnet_bn_512

Sources are cited per line by the short names of docs/experiments.md ("Sources"); "NOT FOUND" marks
a value the paper's text did not give, with what was chosen instead and why. Memory: `microbatches`
is set so that one 8-accelerator machine holds the batch (64 images per device per microbatch on 8
devices); set --config.mesh.microbatches=1 when the per-device batch fits (e.g. 512 over 1 devices
or more).
"""
from lars_jax.configs import get_base_config


def get_config():
    c = get_base_config()
    c.name = "alexnet_bn_512"

    # Data.
    c.data.name = "imagenet2012"  # ILSVRC-2012, 1,281,167 train images: the paper's data
    c.data.image_size = 227  # Caffe's AlexNet crop size (BVLC train_val.prototxt); the paper used Caffe
    c.data.augment = True  # paper (Caffe): random 227 crop + mirror. Ours is an Inception-style
    # random-resized crop + flip (lars_jax/data/imagenet_preprocess.py): NOT the same augmentation.

    # Model.
    c.model.name = "alexnet_bn"  # You et al.: AlexNet with LRN replaced by BatchNorm (AlexNet-BN)
    c.model.dtype = "float32"  # the paper trains in single precision
    c.model.bn_group_size = 64  # You et al.: 32k over 512 KNL = 64 images per worker, normalised per
    # worker. Kept at 64 for every batch so BN statistics mean the same in every row (NOT
    # FOUND per row).
    c.loss.label_smoothing = 0.0  # NOT FOUND in You et al.; BVLC Caffe's AlexNet has none: chose 0

    # Optimizer: LARS as in the paper.
    c.optimizer.name = "lars"  # LARS paper, Algorithm 1
    c.optimizer.lars.denominator = "paper"  # lambda = eta*||w|| / (||g|| + beta*||w||), the paper's form
    c.optimizer.lars.trust_coefficient = 0.001  # You et al.: eta = 0.001 (Intel Caffe 1.0.7: local_gw_ratio default)
    c.optimizer.lars.momentum = 0.9  # You et al.: momentum 0.9
    c.optimizer.lars.weight_decay = 5e-4  # BVLC Caffe's AlexNet solver.prototxt; NOT FOUND in You et al.
    c.schedule.base_learning_rate = 2.0  # NOT FOUND: the paper's per-row LRs were not confirmed from text.
    c.schedule.base_batch_size = 512  # Chosen: peak LR 2 at batch 512, scaled by sqrt(B / 512) (next line),
    c.schedule.lr_scaling = "sqrt"  # i.e. 2 at 512; a choice to tune, not the paper's number.
    # NOT FOUND in You et al. for this batch; chose 2 epochs, a short warmup at the smallest batch
    # (LARS adapts each layer's step, and 13/8 epochs were needed only at 4k/8k)
    c.schedule.warmup_epochs = 2.0
    c.schedule.decay = "poly"  # You et al.: polynomial decay after warmup
    c.schedule.poly_power = 2.0  # You et al.: power 2
    c.schedule.end_learning_rate = 0.0  # Intel Caffe 1.0.7's poly policy decays to 0

    # Schedule of the run.
    c.global_batch_size = 512  # the row's batch
    c.schedule.num_epochs = 100.0  # You et al. (v1 abstract): 100-epoch AlexNet
    c.mesh.microbatches = 1  # memory only, see the module docstring
    return c
