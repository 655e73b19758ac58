"""ResNet-50, batch 8,192, LARS, 90 epochs, without data augmentation: a paper table row.

You et al. 2017 ("ImageNet Training in Minutes") train ResNet-50 with LARS at batch 256 ... 32k for
90 epochs and report results with and without data augmentation.
Per-row accuracies of the paper's table were not confirmed from text (../shared/PAPER.md); README's
grid table lists what was. The paper's Caffe ResNet-50 is v1 (stride in the first 1x1), set below;
MLPerf's and torchvision's are v1.5.

    python -m lars_jax.main --config experiments/resnet50_8k_noaug.py \
        --workdir runs/resnet50_8k_noaug

Sources are cited per line; "NOT FOUND" marks a value the paper's text did not give, with what was
chosen instead and why. Memory: `microbatches` is set so that one 8-accelerator machine holds the
batch (256 images per device per microbatch on 8 devices, about what an 80 GB GPU holds in
float32); set --config.microbatches=1 when the per-device batch fits.
"""
from lars_jax.configs import get_base_config


def get_config():
    c = get_base_config()
    c.name = "resnet50_8k_noaug"

    # Data.
    c.dataset = "imagenet2012"  # ILSVRC-2012, 1,281,167 train images: the paper's data
    c.image_size = 224  # He et al. 2016: 224x224 crops
    c.augment = False  # PAPER.md: the paper reports ResNet-50 with and without
    # augmentation; this is the 'without' row: central 224/256 crop only (what the paper's
    # setting without augmentation did exactly: NOT FOUND)

    # Model.
    c.resnet_variant = "v1"  # the paper trains Caffe's ResNet-50 (He et al. 2016): stride in the 1x1
    c.model = "resnet50"  # PAPER.md: ResNet-50
    c.dtype = "float32"  # the paper trains in single precision
    # NOT FOUND per row; chose the paper's per-KNL batch at 32k (64, PAPER.md) so BN means the
    # same in every LARS row
    c.bn_group_size = 64
    c.label_smoothing = 0.0  # NOT FOUND in PAPER.md for the paper's runs (MLPerf used 0.1): chose 0

    # Optimizer: LARS as in the paper.
    c.optimizer = "lars"  # PAPER.md / LARS paper Algorithm 1
    c.denominator = "paper"  # lambda = eta*||w|| / (||g|| + beta*||w||), the paper's form
    c.trust_coefficient = 0.001  # PAPER.md: eta = 0.001
    c.momentum = 0.9  # PAPER.md: momentum 0.9
    c.weight_decay = 1e-4  # NOT FOUND in PAPER.md for the paper's runs; chose 1e-4, He et al.'s
    # ResNet-50 value, also MLPerf v0.7 JAX's at 32k+ (PAPER.md; it used 2e-4 below 32k)
    # PAPER.md: Google MLPerf v0.7 LARS rule, peak LR 10 below 16k (the paper's own LR NOT
    # FOUND)
    c.base_learning_rate = 10.0
    c.base_batch_size = 8192  # the peak LR above is given for this batch
    c.lr_scaling = "none"  # LARS: no batch scaling rule, the peak is set per row
    # PAPER.md: MLPerf v0.7 warmup 5 epochs below 16k (the paper's own warmup NOT FOUND)
    c.warmup_epochs = 5.0
    c.decay = "poly"  # PAPER.md: gamma_t = gamma_0 * (1 - t/T)^2 after warmup
    c.poly_power = 2.0  # PAPER.md: power 2
    c.end_learning_rate = 0.0  # the paper's formula decays to 0 (MLPerf: 1e-4)

    # Schedule of the run.
    c.global_batch_size = 8192  # the row's batch
    c.num_epochs = 90.0  # PAPER.md: ResNet-50 is trained for 90 epochs
    c.microbatches = 4  # memory only, see the module docstring
    return c
