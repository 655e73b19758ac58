"""You et al.'s AlexNet tables (the AlexNet baseline, the AlexNet-BN rows): every row's values, with sources.

You et al. 2017 ("ImageNet Training in Minutes") and You, Gitman, Ginsburg 2017 (LARS): the
batch-512 AlexNet baseline (momentum SGD), and AlexNet with LRN replaced by BatchNorm trained with
LARS at batch 512 ... 32k, 100 epochs each. Per-row accuracies of the paper's table were not
confirmed from its text; docs/experiments.md's table lists what was.

get_config() returns every row by name; experiments/<row>.py runs one (`--config` takes those files,
not this one). Sources are cited per value by the short names of docs/experiments.md ("Sources");
"NOT FOUND" marks a value the paper's text did not give, with what was chosen instead and why.
Memory: `microbatches` is set so that one 8-accelerator machine holds the batch (at most 512 images
per device per microbatch on 8 devices); set --config.mesh.microbatches=1 when the per-device batch
fits (e.g. batch B over B / 512 devices or more).
"""
import ml_collections

from lars_jax.configs import get_base_config

# AlexNet-BN rows: the batch, the warmup and its source, microbatches (memory only, see above).
# The peak LR follows the sqrt rule of _alexnet_bn: 2 * sqrt(B / 512), i.e. 2, 2.83, 4, 5.66, 8,
# 11.3 and 16 from 512 to 32k.
ALEXNET_BN = dict(
    # NOT FOUND in You et al. for this batch; chose 2 epochs, a short warmup at the smallest batch
    # (LARS adapts each layer's step, and 13/8 epochs were needed only at 4k/8k)
    alexnet_bn_512=dict(batch=512, warmup_epochs=2.0, microbatches=1),
    # NOT FOUND in You et al. for this batch; chose 2 epochs, as at 512
    alexnet_bn_1k=dict(batch=1024, warmup_epochs=2.0, microbatches=1),
    # NOT FOUND in You et al. for this batch; chose 5 epochs (Goyal et al.'s warmup length),
    # between the 2 used at 1k and the paper's 13 at 4k
    alexnet_bn_2k=dict(batch=2048, warmup_epochs=5.0, microbatches=1),
    # You et al.: LARS warmup of 13 epochs at 4k for AlexNet-BN
    alexnet_bn_4k=dict(batch=4096, warmup_epochs=13.0, microbatches=1),
    # You et al.: LARS warmup of 8 epochs at 8k for AlexNet-BN
    alexnet_bn_8k=dict(batch=8192, warmup_epochs=8.0, microbatches=2),
    # NOT FOUND in You et al. for this batch; chose 8 epochs, the value confirmed at 8k (the
    # largest batch with a confirmed warmup)
    alexnet_bn_16k=dict(batch=16384, warmup_epochs=8.0, microbatches=4),
    # NOT FOUND in You et al. for this batch; chose 8 epochs, the value confirmed at 8k (the
    # largest batch with a confirmed warmup)
    alexnet_bn_32k=dict(batch=32768, warmup_epochs=8.0, microbatches=8),
)


def _imagenet_alexnet(name):
    """What every row shares: the data, single precision, poly(2) decay, 100 epochs."""
    c = get_base_config()
    c.name = name
    c.data.name = "imagenet2012"  # ILSVRC-2012, 1,281,167 train images: the paper's data
    c.data.image_size = 227  # Caffe's AlexNet crop size (BVLC train_val.prototxt); the paper used Caffe
    c.data.augment = True  # paper (Caffe): random 227 crop + mirror. Ours is an Inception-style
    # random-resized crop + flip (lars_jax/data/imagenet_preprocess.py): NOT the same augmentation.
    c.model.dtype = "float32"  # the paper trains in single precision
    c.loss.label_smoothing = 0.0  # NOT FOUND in You et al.; BVLC Caffe's AlexNet has none: chose 0
    c.schedule.decay = "poly"  # You et al.: poly(2) decay (after warmup, for the LARS rows)
    c.schedule.poly_power = 2.0  # You et al.: power 2
    c.schedule.num_epochs = 100.0  # You et al. (v1 abstract): 100-epoch AlexNet
    return c


def _alexnet_512():
    """The baseline row: plain momentum SGD, no LARS."""
    c = _imagenet_alexnet("alexnet_512")
    c.model.name = "alexnet"  # BVLC reference AlexNet with LRN and grouped convs: the baseline network
    c.optimizer.name = "sgd"  # You et al.: base LR 0.01 (an SGD-scale rate; LARS uses global LRs of 1-10)
    c.optimizer.sgd.weight_decay_mode = "l2"  # Caffe adds beta*w to the gradient
    c.optimizer.sgd.momentum = 0.9  # You et al.: momentum 0.9 (BVLC Caffe's AlexNet solver too)
    c.optimizer.sgd.weight_decay = 5e-4  # BVLC Caffe's AlexNet solver.prototxt; NOT FOUND in You et al.
    c.schedule.base_learning_rate = 0.01  # You et al.: base LR 0.01 at batch 512
    c.schedule.base_batch_size = 512  # You et al.: the baseline's batch
    c.schedule.lr_scaling = "none"  # the LR is given for this very batch
    c.schedule.warmup_epochs = 0.0  # NOT FOUND in You et al.; Caffe's "poly" policy has no warmup: chose 0
    c.schedule.end_learning_rate = 0.0  # Caffe's poly policy decays to 0
    c.global_batch_size = 512  # You et al.: batch 512
    c.mesh.microbatches = 1  # 64 images per device on 8 devices
    return c


def _alexnet_bn(name, batch, warmup_epochs, microbatches):
    """An AlexNet-BN row: LARS as in the paper; the batch, warmup and microbatches from ALEXNET_BN."""
    c = _imagenet_alexnet(name)
    c.model.name = "alexnet_bn"  # You et al.: AlexNet with LRN replaced by BatchNorm (AlexNet-BN)
    c.model.bn_group_size = 64  # You et al.: 32k over 512 KNL = 64 images per worker, normalised per
    # worker. Kept at 64 for every batch so BN statistics mean the same in every row (NOT
    # FOUND per row).
    c.optimizer.name = "lars"  # LARS paper, Algorithm 1
    c.optimizer.lars.denominator = "paper"  # lambda = eta*||w|| / (||g|| + beta*||w||), the paper's form
    c.optimizer.lars.trust_coefficient = 0.001  # You et al.: eta = 0.001 (Intel Caffe 1.0.7: local_gw_ratio default)
    c.optimizer.lars.momentum = 0.9  # You et al.: momentum 0.9
    c.optimizer.lars.weight_decay = 5e-4  # BVLC Caffe's AlexNet solver.prototxt; NOT FOUND in You et al.
    c.schedule.base_learning_rate = 2.0  # NOT FOUND: the paper's per-row LRs were not confirmed from text.
    c.schedule.base_batch_size = 512  # Chosen: peak LR 2 at batch 512, scaled by sqrt(B / 512) (next line),
    c.schedule.lr_scaling = "sqrt"  # i.e. 2 at 512; a choice to tune, not the paper's number.
    c.schedule.warmup_epochs = warmup_epochs  # ALEXNET_BN: per row, with its source
    c.schedule.end_learning_rate = 0.0  # Intel Caffe 1.0.7's poly policy decays to 0
    c.global_batch_size = batch  # the row's batch
    c.mesh.microbatches = microbatches  # memory only, see the module docstring
    return c


def get_config():
    rows = ml_collections.ConfigDict()
    rows.alexnet_512 = _alexnet_512()
    for name, row in ALEXNET_BN.items():
        rows[name] = _alexnet_bn(name, **row)
    return rows
