"""The MLPerf ResNet-50 reference's LARS recipe at batch 32,768.

Not a row of the paper: the recipe later large-batch records converged on, as a modern reference
point. It reproduces one public reference: the MLPerf ResNet-50 TF2 reference,
github.com/mlcommons/training at commit aa344c7fb900e82ed19fb94aebfed50c63ab2204, directory
retired_benchmarks/resnet-tf2/tensorflow2/ (image_classification/tensorflow2/ until August 2024;
the files are unchanged since commit e821074526f6d6619baacf70a216a59318adb32c): lars_optimizer.py,
lars_util.py, common.py, resnet_model.py. Its README gives no 32k command; the run this file
matches is the README's TPU command with the batch and length changed:

    python3 resnet_ctl_imagenet_main.py --batch_size=32768 --optimizer=LARS \
        --lr_schedule=polynomial --base_learning_rate=31.2 --lars_epsilon=0 --momentum=0.9 \
        --weight_decay=0.0001 --label_smoothing=0.1 --train_epochs=64 --epochs_between_evals=4 \
        --eval_offset_epochs=0 --num_accumulation_steps=1 --single_l2_loss_op ...

tests/test_mlperf_reference.py checks the optimizer and schedule built from this file against a
float64 NumPy transcription of that code (1e-12 relative under x64).

Google's two MLPerf v0.7 submissions at this batch (github.com/mlcommons/training_results_v0.7 at
0a8a85a209c8e45b661596c382cc20f4e32fd2fe, Google/benchmarks/resnet/implementations/) differ:
resnet-research-TF-tpu-v3-8192/lars_util.py has the values followed here (peak 31.2, 25 warmup
epochs, resnet_main.py's momentum 0.9), resnet-research-JAX-tpu-v3-8192/train.py has peak 29.0,
18 warmup epochs and momentum 0.929 at 32k <= batch < 64k. This file follows the TF2 reference,
MLPerf's own reference implementation, because lars_jax reproduces its optimizer exactly; the JAX
submission's cannot be: it uses flax.optim.Momentum (LR outside the momentum buffer) for biases
and BatchNorm scales, flax's LARS of that time gives a tensor with a zero gradient eta/beta rather
than 1, and it counts 39.25 steps per epoch. A config for it would only approximate it, so none is
offered.

    python -m lars_jax.main --config experiments/mlperf_resnet50_32k.py \
        --workdir runs/mlperf_resnet50_32k

Paths below are in that reference directory unless said otherwise; "choice" marks a value it does
not set, with the reason.
"""
from lars_jax.configs import get_base_config


def get_config():
    c = get_base_config()
    c.name = "mlperf_resnet50_32k"

    # Data.
    c.data.name = "imagenet2012"  # ILSVRC-2012: imagenet_preprocessing.py
    c.data.image_size = 224  # imagenet_preprocessing.py: 224x224 crops
    # imagenet_preprocessing.py: random crop + flip; ours is the same family (Inception-style
    # random-resized crop + flip), not the same pipeline
    c.data.augment = True

    # Model.
    c.model.name = "resnet50"  # resnet_model.py: ResNet-50 v1.5 (stride in the 3x3), our default variant
    # choice: the reference's commands pass --dtype=fp32; bfloat16 for speed, as Google's v0.7 JAX
    # submission trained (train.py --bfloat16); params and optimizer state stay float32
    c.model.dtype = "bfloat16"
    # choice: Keras BatchNormalization normalises per replica; the README's TPU command has 64 per
    # replica (batch 4,096 on --num_replicas=64), kept here
    c.model.bn_group_size = 64
    c.loss.label_smoothing = 0.1  # README's run commands: --label_smoothing=0.1

    # Optimizer: LARS (lars_optimizer.py LARSOptimizer, built by common.py get_optimizer).
    c.optimizer.name = "lars"
    c.optimizer.lars.denominator = "paper"  # compute_lr: eeta*||w|| / (||g|| + wd*||w|| + epsilon)
    c.optimizer.lars.trust_coefficient = 0.001  # LARSOptimizer's eeta default; get_optimizer passes none
    # epsilon = `epsilon or backend_config.epsilon()`: --lars_epsilon=0 (the flag's default and the
    # README's) becomes Keras' 1e-7
    c.optimizer.lars.eps = 1e-7
    c.optimizer.lars.momentum = 0.9  # lars_util.py --momentum default, README's TPU command
    c.optimizer.lars.nesterov = False  # LARSOptimizer's use_nesterov default
    # resnet_model.py --weight_decay default (README's 2k/4k commands pass 2e-4; Google's v0.7 JAX
    # train.py also uses 1e-4 from batch 32k); --single_l2_loss_op keeps it out of the loss
    c.optimizer.lars.weight_decay = 1e-4
    # Excluded: common.py skip_list ['batch_normalization', 'bias', 'bn'] is every BatchNorm scale
    # and bias and the dense bias of its ResNet-50 (no conv has a bias): lars_jax's default, ndim <= 1.

    # Schedule: lars_util.py PolynomialDecayWithWarmup, evaluated at optimizer.iterations (0 at the
    # first update, as lars_jax counts).
    c.schedule.base_learning_rate = 31.2  # its table for batch_size >= 32768 (pass --base_learning_rate=31.2:
    # that flag's default 0.1 would replace the table's value)
    c.schedule.base_batch_size = 32768  # the peak above is given for this batch
    c.schedule.lr_scaling = "none"  # the table sets the peak per batch band
    c.schedule.warmup_epochs = 25.0  # its table for batch_size >= 32768 (--warmup_epochs unset)
    c.schedule.warmup_init_learning_rate = 0.0  # warmup_rate = peak * step / warmup_steps
    c.schedule.decay = "poly"  # tf.keras PolynomialDecay after warmup
    c.schedule.poly_power = 2.0  # PolynomialDecay(power=2.0)
    c.schedule.poly_extra_decay_steps = 1  # decay_steps = train_steps - warmup_steps + 1
    c.schedule.end_learning_rate = 1e-4  # --end_learning_rate unset: 0.0001

    # Length of the run.
    c.global_batch_size = 32768
    # choice: MLPerf trains to 75.9% top-1 (README, "Quality target"), not for a set length, and the
    # README has no 32k command; 64 epochs is Google's v0.7 JAX default at this batch (train.py
    # num_epochs) and the length in which You et al. reached 74.9% at 32k (arXiv 1709.05011v10,
    # abstract). The reference trains 39 steps per epoch here (1,281,167 // 32,768, remainder
    # dropped), as lars_jax does: 2,496 steps.
    c.schedule.num_epochs = 64.0
    # memory only, one update per step either way (unlike the reference's --num_accumulation_steps,
    # whose micro-steps advance the schedule): 512 images per device per microbatch on 8 devices
    # in bf16; set 1 when the per-device batch fits
    c.mesh.microbatches = 8
    return c
