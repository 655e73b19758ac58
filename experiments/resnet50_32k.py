"""ResNet-50, batch 32,768, LARS, 90 epochs, with data augmentation: a paper table row.

You et al. 2017 ("ImageNet Training in Minutes") train ResNet-50 with LARS at batch 256 ... 32k for
90 epochs and report results with and without data augmentation.
You et al.: 90 epochs at batch 32,768 took 1 hour on 512 KNL (72.4% top-1), later 20 minutes on
2,048 KNL (75.4%; the 20 minutes are in the ICPP 2018 abstract); which augmentation each used was
not confirmed. Per-row accuracies of the paper's table were not confirmed from its text;
docs/experiments.md's table lists what was. The paper's Caffe ResNet-50 is v1 (stride in the first 1x1), set below;
MLPerf's and torchvision's are v1.5.

    python -m lars_jax.main --config experiments/resnet50_32k.py \
        --workdir runs/resnet50_32k

Sources are cited per line by the short names of docs/experiments.md ("Sources"); "NOT FOUND" marks
a value the paper's text did not give, with what was chosen instead and why. Memory: `microbatches`
is set so that one 8-accelerator machine holds the batch (256 images per device per microbatch on 8
devices, about what an 80 GB GPU holds in float32); set --config.mesh.microbatches=1 when the
per-device batch fits.
"""
from lars_jax.configs import get_base_config


def get_config():
    c = get_base_config()
    c.name = "resnet50_32k"

    # Data.
    c.data.name = "imagenet2012"  # ILSVRC-2012, 1,281,167 train images: the paper's data
    c.data.image_size = 224  # He et al. 2016: 224x224 crops
    c.data.augment = True  # You et al. report ResNet-50 with and without
    # augmentation; this is the 'with' row: Inception-style random-resized crop
    # + flip (lars_jax/data/imagenet_preprocess.py)

    # Model.
    c.model.variant = "v1"  # the paper trains Caffe's ResNet-50 (He et al. 2016): stride in the 1x1
    c.model.name = "resnet50"  # You et al.: ResNet-50
    c.model.dtype = "float32"  # the paper trains in single precision
    # You et al.: batch 32k over 512 KNL = 64 images per worker, normalised per worker
    c.model.bn_group_size = 64
    c.loss.label_smoothing = 0.0  # NOT FOUND in You et al. (the MLPerf reference uses 0.1): chose 0

    # Optimizer: LARS as in the paper.
    c.optimizer.name = "lars"  # LARS paper, Algorithm 1
    c.optimizer.lars.denominator = "paper"  # lambda = eta*||w|| / (||g|| + beta*||w||), the paper's form
    c.optimizer.lars.trust_coefficient = 0.001  # You et al.: eta = 0.001 (Intel Caffe 1.0.7: local_gw_ratio default)
    c.optimizer.lars.momentum = 0.9  # You et al.: momentum 0.9
    c.optimizer.lars.weight_decay = 1e-4  # NOT FOUND in You et al.; chose 1e-4, He et al.'s ResNet-50
    # value, also the MLPerf TF2 reference's default and MLPerf v0.7 JAX's from 32k (2e-4 below)
    # MLPerf TF2 reference lars_util.py (= MLPerf v0.7 TF): peak LR 31.2 from batch 32k (the paper's
    # own LR NOT FOUND)
    c.schedule.base_learning_rate = 31.2
    c.schedule.base_batch_size = 32768  # the peak LR above is given for this batch
    c.schedule.lr_scaling = "none"  # LARS: no batch scaling rule, the peak is set per row
    # MLPerf TF2 reference lars_util.py: warmup 25 epochs from 32k (the paper's own warmup NOT FOUND)
    c.schedule.warmup_epochs = 25.0
    c.schedule.decay = "poly"  # You et al.: polynomial decay after warmup
    c.schedule.poly_power = 2.0  # You et al.: power 2
    c.schedule.end_learning_rate = 0.0  # Intel Caffe 1.0.7's poly policy decays to 0 (MLPerf: 1e-4)

    # Schedule of the run.
    c.global_batch_size = 32768  # the row's batch
    c.schedule.num_epochs = 90.0  # You et al. (v1 abstract): 90-epoch ResNet-50
    c.mesh.microbatches = 16  # memory only, see the module docstring
    return c
