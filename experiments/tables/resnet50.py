"""You et al.'s ResNet-50 table: every row's values, each with its source.

You et al. 2017 ("ImageNet Training in Minutes") train ResNet-50 with LARS at batch 256 ... 32k for
90 epochs and report results with and without data augmentation. Per-row accuracies of the paper's
table were not confirmed from its text; docs/experiments.md's table lists what was. The paper's
Caffe ResNet-50 is v1 (stride in the first 1x1), set below; MLPerf's and torchvision's are v1.5.

get_config() returns every row by name; experiments/<row>.py runs one (`--config` takes those files,
not this one). Sources are cited per value by the short names of docs/experiments.md ("Sources");
"NOT FOUND" marks a value the paper's text did not give, with what was chosen instead and why.
Memory: `microbatches` is set so that one 8-accelerator machine holds the batch (at most 256 images
per device per microbatch on 8 devices, about what an 80 GB GPU holds in float32); set
--config.mesh.microbatches=1 when the per-device batch fits.
"""
import ml_collections

from lars_jax.configs import get_base_config

# The rows with data augmentation; each has a '_noaug' row beside it, the same but for
# data.augment. Per row: the batch, the BN group, the peak LR, the warmup (each with its source;
# the paper's own LRs and warmups were NOT FOUND) and microbatches (memory only, see above).
RESNET50 = dict(
    # bn_group_size: He et al. 2016 / Goyal et al.: 256 over 8 GPUs = 32 images per BN group. NOT
    # FOUND for the paper's run.
    # peak_lr: NOT FOUND: the paper's per-row LRs were not confirmed. Chosen: the lowest band of the
    # MLPerf LARS rule (MLPerf TF2 reference lars_util.py: peak LR 10 below 16k); MLPerf never ran
    # 256, so untested here.
    # warmup_epochs: NOT FOUND for this batch; chose 5 epochs, the MLPerf TF2 reference's warmup
    # below 16k (lars_util.py).
    resnet50_256=dict(batch=256, bn_group_size=32, peak_lr=10.0, warmup_epochs=5.0, microbatches=1),
    # bn_group_size: stays the 32k row's 64 (its per-KNL batch, You et al.) so that BN means the
    # same in every LARS row: NOT FOUND per row.
    # peak_lr: MLPerf TF2 reference lars_util.py (= MLPerf v0.7 TF): peak LR 10 below batch 16k (the
    # paper's own LR NOT FOUND).
    # warmup_epochs: MLPerf TF2 reference lars_util.py: warmup 5 epochs below 16k (the paper's own
    # warmup NOT FOUND).
    resnet50_8k=dict(batch=8192, bn_group_size=64, peak_lr=10.0, warmup_epochs=5.0, microbatches=4),
    # bn_group_size: stays the 32k row's 64 (its per-KNL batch, You et al.) so that BN means the
    # same in every LARS row: NOT FOUND per row.
    # peak_lr: MLPerf TF2 reference lars_util.py (= MLPerf v0.7 TF): peak LR 25 from 16k to below
    # 32k (the paper's own LR NOT FOUND).
    # warmup_epochs: MLPerf TF2 reference lars_util.py: warmup 5 epochs below 32k (the paper's own
    # warmup NOT FOUND).
    resnet50_16k=dict(batch=16384, bn_group_size=64, peak_lr=25.0, warmup_epochs=5.0, microbatches=8),
    # bn_group_size: You et al.: batch 32k over 512 KNL = 64 images per worker, normalised per worker.
    # peak_lr: MLPerf TF2 reference lars_util.py (= MLPerf v0.7 TF): peak LR 31.2 from batch 32k
    # (the paper's own LR NOT FOUND).
    # warmup_epochs: MLPerf TF2 reference lars_util.py: warmup 25 epochs from 32k (the paper's own
    # warmup NOT FOUND).
    resnet50_32k=dict(batch=32768, bn_group_size=64, peak_lr=31.2, warmup_epochs=25.0, microbatches=16),
)


def _resnet50(name, augment, batch, bn_group_size, peak_lr, warmup_epochs, microbatches):
    """One row: LARS as in the paper; the values that change per row come from RESNET50."""
    c = get_base_config()
    c.name = name

    # Data.
    c.data.name = "imagenet2012"  # ILSVRC-2012, 1,281,167 train images: the paper's data
    c.data.image_size = 224  # He et al. 2016: 224x224 crops
    # You et al. report ResNet-50 with and without augmentation. 'with': Inception-style
    # random-resized crop + flip (lars_jax/data/imagenet_preprocess.py); 'without' (the _noaug
    # rows): the central 224/256 crop only (what the paper's setting without augmentation did
    # exactly: NOT FOUND).
    c.data.augment = augment

    # Model.
    c.model.variant = "v1"  # the paper trains Caffe's ResNet-50 (He et al. 2016): stride in the 1x1
    c.model.name = "resnet50"  # You et al.: ResNet-50
    c.model.dtype = "float32"  # the paper trains in single precision
    c.model.bn_group_size = bn_group_size  # RESNET50: per row, with its source
    c.loss.label_smoothing = 0.0  # NOT FOUND in You et al. (the MLPerf reference uses 0.1): chose 0

    # Optimizer: LARS as in the paper.
    c.optimizer.name = "lars"  # LARS paper, Algorithm 1
    c.optimizer.lars.denominator = "paper"  # lambda = eta*||w|| / (||g|| + beta*||w||), the paper's form
    c.optimizer.lars.trust_coefficient = 0.001  # You et al.: eta = 0.001 (Intel Caffe 1.0.7: local_gw_ratio default)
    c.optimizer.lars.momentum = 0.9  # You et al.: momentum 0.9
    c.optimizer.lars.weight_decay = 1e-4  # NOT FOUND in You et al.; chose 1e-4, He et al.'s ResNet-50
    # value, also the MLPerf TF2 reference's default and MLPerf v0.7 JAX's from 32k (2e-4 below)
    c.schedule.base_learning_rate = peak_lr  # RESNET50: per row, with its source
    c.schedule.base_batch_size = batch  # the peak LR above is given for this batch
    c.schedule.lr_scaling = "none"  # LARS: no batch scaling rule, the peak is set per row
    c.schedule.warmup_epochs = warmup_epochs  # RESNET50: per row, with its source
    c.schedule.decay = "poly"  # You et al.: polynomial decay after warmup
    c.schedule.poly_power = 2.0  # You et al.: power 2
    c.schedule.end_learning_rate = 0.0  # Intel Caffe 1.0.7's poly policy decays to 0 (MLPerf: 1e-4)

    # Schedule of the run.
    c.global_batch_size = batch  # the row's batch
    c.schedule.num_epochs = 90.0  # You et al. (v1 abstract): 90-epoch ResNet-50
    c.mesh.microbatches = microbatches  # memory only, see the module docstring
    return c


def get_config():
    rows = ml_collections.ConfigDict()
    for name, row in RESNET50.items():
        rows[name] = _resnet50(name, True, **row)
        rows[name + "_noaug"] = _resnet50(name + "_noaug", False, **row)
    return rows
