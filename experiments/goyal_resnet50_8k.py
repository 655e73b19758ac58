"""Goyal et al. 2017 baseline: ResNet-50, batch 8k, momentum SGD, linear LR scaling + warmup.

The paper compares LARS against this recipe ("Accurate, Large Minibatch SGD: Training ImageNet in
1 Hour", arXiv 1706.02677): LR = 0.1 * batch / 256, 5 warmup epochs, step decay, 90 epochs, batch
8k: 76.3% top-1 (23.74% error) in 1 hour on 256 P100.

    python -m lars_jax.main --config experiments/goyal_resnet50_8k.py \
        --workdir runs/goyal_resnet50_8k

Goyal et al.'s warmup from LR 0.1 to 3.2, their zero-initialised last BN scale per residual block
and their stride-2 3x3 convolutions (v1.5) are set below.
Sources are cited per line by the short names of docs/experiments.md ("Sources").
"""
from lars_jax.configs import get_base_config


def get_config():
    c = get_base_config()
    c.name = "goyal_resnet50_8k"

    # Data.
    c.data.name = "imagenet2012"  # ILSVRC-2012, 1,281,167 train images
    c.data.image_size = 224  # He et al. 2016 / Goyal et al.: 224x224 crops
    c.data.augment = True  # Goyal et al.: scale + aspect-ratio augmentation and flips; ours:
    # Inception-style random-resized crop + flip, the same family

    # Model.
    c.model.name = "resnet50"  # Goyal et al.: ResNet-50
    c.model.variant = "v1.5"  # Goyal et al.: stride 2 in the 3x3 convs
    c.model.zero_init_last_bn = True  # Goyal et al. Sec. 5.1: gamma = 0 per block
    c.model.dtype = "float32"  # Goyal et al. trained in single precision
    c.model.bn_group_size = 32  # Goyal et al.: BN over n = 32 images per GPU
    c.loss.label_smoothing = 0.0  # Goyal et al. use none: 0

    # Optimizer: momentum SGD with linear scaling, warmup and step decay.
    c.optimizer.name = "sgd"  # Goyal et al.: momentum SGD with linear scaling + warmup
    c.optimizer.sgd.weight_decay_mode = "l2"  # Goyal et al.: weight decay added to the gradient
    c.optimizer.sgd.momentum = 0.9  # Goyal et al.: m = 0.9
    c.optimizer.sgd.nesterov = False  # Goyal et al.: plain momentum
    c.optimizer.sgd.weight_decay = 1e-4  # Goyal et al.: 0.0001
    c.schedule.base_learning_rate = 0.1  # Goyal et al.: LR = 0.1 * batch / 256
    c.schedule.base_batch_size = 256  # Goyal et al.: ... / 256
    c.schedule.lr_scaling = "linear"  # Goyal et al.: linear scaling rule -> peak 3.2 at 8,192
    c.schedule.warmup_epochs = 5.0  # Goyal et al.: 5 warmup epochs
    c.schedule.warmup_init_learning_rate = 0.1  # Goyal et al. Sec. 2.2: warmup from 0.1 to 3.2
    c.schedule.decay = "step"  # Goyal et al.: step decay
    c.schedule.step_decay_epochs = (30, 60, 80)  # Goyal et al.: x0.1 at epochs 30, 60, 80
    c.schedule.step_decay_factor = 0.1  # Goyal et al.: divide by 10

    # Schedule of the run.
    c.global_batch_size = 8192  # Goyal et al.: batch 8k
    c.schedule.num_epochs = 90.0  # Goyal et al.: 90 epochs
    c.mesh.microbatches = 4  # memory only: 256 images per device per microbatch on 8 devices; set 1
    # when the per-device batch fits (Goyal et al.: 32 per GPU on 256 GPUs)
    return c
