"""experiments/mlperf_resnet50_32k.py against a float64 NumPy transcription of the reference it names.

The reference: the MLPerf ResNet-50 TF2 reference, mlcommons/training at commit
aa344c7fb900e82ed19fb94aebfed50c63ab2204, retired_benchmarks/resnet-tf2/tensorflow2/ (the same files
were image_classification/tensorflow2/ until August 2024). The functions below were written here from
reading lars_optimizer.py (LARSOptimizer), lars_util.py (PolynomialDecayWithWarmup, its flags),
common.py (get_optimizer, get_num_train_iterations) and resnet_model.py (the weight_decay flag).
"""
import os

import jax
import numpy as np
import pytest

from helpers import steps_plan
from lars_jax import configs, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "mlperf_resnet50_32k.py")

# The reference's constants and flag defaults.
NUM_TRAIN = 1_281_167  # imagenet_preprocessing.NUM_IMAGES["train"]
KERAS_EPSILON = 1e-7  # tf.keras.backend.epsilon(): LARSOptimizer uses `epsilon or epsilon()`
SKIP_LIST = ("batch_normalization", "bias", "bn")  # common.get_optimizer: skipped by substring of the name
FLAGS = dict(momentum=0.9, weight_decay=1e-4, eeta=0.001, lars_epsilon=0.0)
TRAIN_EPOCHS = 64  # the config's length: --train_epochs=64 --epochs_between_evals=4 --eval_offset_epochs=0


def reference_steps_per_epoch(batch_size):
    return NUM_TRAIN // batch_size  # --drop_train_remainder (default True)


def reference_train_epochs(train_epochs, epochs_between_evals=4, eval_offset_epochs=0):
    """get_num_train_iterations: the run is rounded up to the evaluation cadence."""
    return eval_offset_epochs + -(-(train_epochs - eval_offset_epochs) // epochs_between_evals) * epochs_between_evals


def reference_learning_rate(step, *, batch_size, steps_per_epoch, train_steps):
    """PolynomialDecayWithWarmup(...)(step) with the batch table's peak and warmup, end LR 1e-4;
    `step` is optimizer.iterations, 0 at the first update."""
    if batch_size < 16384:
        peak, warmup_epochs = 10.0, 5
    elif batch_size < 32768:
        peak, warmup_epochs = 25.0, 5
    else:
        peak, warmup_epochs = 31.2, 25
    end = 1e-4
    warmup = warmup_epochs * steps_per_epoch
    decay_steps = train_steps - warmup + 1
    if step <= warmup:
        return peak * step / warmup
    done = min(step - warmup, decay_steps) / decay_steps  # keras PolynomialDecay, cycle=False
    return (peak - end) * (1.0 - done) ** 2 + end


def reference_lars(params, grads_seq, learning_rate, *, momentum, weight_decay, eeta, lars_epsilon):
    """LARSOptimizer._resource_apply_dense on every variable, in float64; the params after each step.

    params / grads: {variable name: array}. Skipped variables get plain momentum with the LR inside
    the buffer and no weight decay; the trust ratio is 1 where ||w|| or ||g|| is 0."""
    eps = lars_epsilon or KERAS_EPSILON
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}
    mom = {k: np.zeros_like(v) for k, v in w.items()}
    out = []
    for step, grads in enumerate(grads_seq):
        lr = learning_rate(step)
        for name in w:
            g, scaled_lr = np.asarray(grads[name], np.float64), lr
            if not any(s in name for s in SKIP_LIST):
                w_norm, g_norm = np.linalg.norm(w[name]), np.linalg.norm(g)
                ratio = eeta * w_norm / (g_norm + weight_decay * w_norm + eps) if w_norm > 0 and g_norm > 0 else 1.0
                scaled_lr, g = lr * ratio, g + weight_decay * w[name]
            mom[name] = mom[name] * momentum - g * scaled_lr
            w[name] = w[name] + mom[name]
        out.append(dict(w))
    return out


# Keras layer names as the reference's ResNet-50 spells them: a conv kernel, its BatchNorm scale and
# bias, the dense kernel and bias, and a conv kernel whose gradient is zero at every step.
SHAPES = {"res2a_branch2a": {"kernel": (3, 3, 8, 16)}, "bn2a_branch2a": {"gamma": (16,), "beta": (16,)},
          "fc1000": {"kernel": (64, 10), "bias": (10,)}, "res2a_branch1": {"kernel": (1, 1, 8, 16)}}
ZERO_GRAD = "res2a_branch1/kernel"


def by_name(tree):
    """{"fc1000/kernel": NumPy array, ...}: NumPy, so that no arithmetic on it drops to JAX's float32."""
    return {"/".join(k.key for k in path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def random_tree(rng, scale, zero=()):
    tree = {layer: {v: scale * rng.standard_normal(s) for v, s in shapes.items()} for layer, shapes in SHAPES.items()}
    for name in zero:
        layer, v = name.split("/")
        tree[layer][v] = np.zeros_like(tree[layer][v])
    return tree


@pytest.fixture(scope="module")
def config():
    return configs.load_config(CONFIG)


def test_config_sets_the_reference_values_outside_the_optimizer(config):
    assert config.global_batch_size == 32768
    assert config.loss.label_smoothing == 0.1  # the reference's run commands pass --label_smoothing=0.1
    steps_per_epoch = reference_steps_per_epoch(config.global_batch_size)
    assert steps_per_epoch == 39
    assert steps_plan(config, steps_per_epoch).total_steps == steps_per_epoch * reference_train_epochs(TRAIN_EPOCHS)


def test_schedule_matches_the_reference_at_batch_32k(config):
    spe = reference_steps_per_epoch(config.global_batch_size)
    total = spe * reference_train_epochs(TRAIN_EPOCHS)  # 2,496 steps, warmup 975
    warmup = 25 * spe
    points = {"step 0": 0, "mid-warmup": warmup // 2, "end of warmup": warmup,
              "mid-decay": warmup + (total - warmup) // 2, "last step": total - 1}
    with jax.enable_x64(True):
        schedule = jax.jit(train.build_schedule(config, steps_plan(config, spe)))
        got = {k: float(schedule(np.int32(s))) for k, s in points.items()}  # optax counts in int32
    for name, step in points.items():
        want = reference_learning_rate(step, batch_size=config.global_batch_size, steps_per_epoch=spe,
                                       train_steps=total)
        print(f"{name} (step {step}): lars_jax {got[name]:.6g}, reference {want:.6g}")
        assert got[name] == pytest.approx(want, rel=1e-12, abs=0.0), name


def test_lars_matches_the_reference_over_the_whole_schedule_with_a_zero_gradient(config, rng):
    # steps_per_epoch = 1 puts warmup, peak and decay into 64 steps, each read from the config as at 32k.
    spe, steps = 1, TRAIN_EPOCHS
    with jax.enable_x64(True):
        params = random_tree(rng, 1.0)
        grads_seq = [random_tree(rng, 10.0 ** rng.uniform(-3, 1), zero=(ZERO_GRAD,)) for _ in range(steps)]
        tx = train.build_optimizer(config, train.build_schedule(config, steps_plan(config, spe)))
        state, update = tx.init(params), jax.jit(tx.update)
        got, w = [], params
        for grads in grads_seq:
            updates, state = update(grads, state, w)
            w = jax.tree.map(lambda p, u: p + u, w, updates)
            got.append(by_name(w))
        assert all(x.dtype == np.float64 for x in jax.tree.leaves(w))
    lr = lambda s: reference_learning_rate(s, batch_size=config.global_batch_size, steps_per_epoch=spe,  # noqa: E731
                                           train_steps=steps)
    w0 = by_name(params)
    ref = reference_lars(w0, [by_name(g) for g in grads_seq], lr, **FLAGS)
    # Relative to the change w_t - w_0 (step 0 has LR 0 and changes nothing): the params themselves
    # would hide an error in the update behind ||w||.
    errors = {name: max(float(np.max(np.abs(g[name] - r[name])) / np.max(np.abs(r[name] - w0[name])))
                        for g, r in zip(got[1:], ref[1:]))
              for name in w0}
    print("max relative error of w_t - w_0 per tensor:", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) <= 1e-12, errors
