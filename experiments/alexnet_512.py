"""AlexNet (BVLC, with LRN), batch 512, momentum SGD, 100 epochs: the paper's baseline row.

You et al.: the batch-512 AlexNet baseline, base LR 0.01 with poly(2) decay for 100 epochs,
reached about 58% top-1; on one DGX-1 (8 P100, single precision) 100 epochs of AlexNet took 6 h
9 min at batch 512 (2 h 10 min at batch 4096).

    python -m lars_jax.main --config experiments/alexnet_512.py --workdir runs/alexnet_512

Sources are cited per line by the short names of docs/experiments.md ("Sources"); "NOT FOUND"
marks a value the paper's text did not give.
"""
from lars_jax.configs import get_base_config


def get_config():
    c = get_base_config()
    c.name = "alexnet_512"

    # Data.
    c.data.name = "imagenet2012"  # ILSVRC-2012, 1,281,167 train images: the paper's data
    c.data.image_size = 227  # Caffe's AlexNet crop size (BVLC train_val.prototxt)
    c.data.augment = True  # paper (Caffe): random 227 crop + mirror. Ours is an Inception-style
    # random-resized crop + flip (lars_jax/data/imagenet_preprocess.py): NOT the same augmentation.

    # Model.
    c.model.name = "alexnet"  # BVLC reference AlexNet with LRN and grouped convs: the baseline network
    c.model.dtype = "float32"  # the paper trains in single precision
    c.loss.label_smoothing = 0.0  # NOT FOUND in You et al.; BVLC Caffe's AlexNet has none: chose 0

    # Optimizer: the baseline is plain momentum SGD, no LARS.
    c.optimizer.name = "sgd"  # You et al.: base LR 0.01 (an SGD-scale rate; LARS uses global LRs of 1-10)
    c.optimizer.sgd.weight_decay_mode = "l2"  # Caffe adds beta*w to the gradient
    c.optimizer.sgd.momentum = 0.9  # You et al.: momentum 0.9 (BVLC Caffe's AlexNet solver too)
    c.optimizer.sgd.weight_decay = 5e-4  # BVLC Caffe's AlexNet solver.prototxt; NOT FOUND in You et al.
    c.schedule.base_learning_rate = 0.01  # You et al.: base LR 0.01 at batch 512
    c.schedule.base_batch_size = 512  # You et al.: the baseline's batch
    c.schedule.lr_scaling = "none"  # the LR is given for this very batch
    c.schedule.warmup_epochs = 0.0  # NOT FOUND in You et al.; Caffe's "poly" policy has no warmup: chose 0
    c.schedule.decay = "poly"  # You et al.: poly(2) decay
    c.schedule.poly_power = 2.0  # You et al.: power 2
    c.schedule.end_learning_rate = 0.0  # Caffe's poly policy decays to 0

    # Schedule of the run.
    c.global_batch_size = 512  # You et al.: batch 512
    c.schedule.num_epochs = 100.0  # You et al. (v1 abstract): 100-epoch AlexNet
    c.mesh.microbatches = 1  # 64 images per device on 8 devices
    return c
