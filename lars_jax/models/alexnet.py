"""AlexNet as trained in the paper's Caffe setting, and AlexNet-BN (LRN replaced by BatchNorm).

"alexnet" follows BVLC Caffe's reference model, models/bvlc_alexnet/train_val.prototxt
(github.com/BVLC/caffe): conv1 96 11x11/4 -> ReLU -> LRN -> maxpool 3/2; conv2 256 5x5 pad 2
group 2 -> ReLU -> LRN -> maxpool 3/2; conv3 384 3x3 pad 1; conv4 384 3x3 pad 1 group 2;
conv5 256 3x3 pad 1 group 2 -> maxpool 3/2; fc6 4096 -> ReLU -> dropout 0.5; fc7 4096 -> ReLU ->
dropout 0.5; fc8. Every layer has a bias. 60,965,224 parameters at 1000 classes (groups via
`feature_group_count`, which splits inputs and outputs in contiguous halves like Caffe's `group`).
Init as in the prototxt: Gaussian std 0.01 (fc6/fc7 0.005); biases 0 (conv1, conv3, fc8) or 0.1.

"alexnet_bn" (You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks":
AlexNet-BN replaces LRN by BN and adds BN after every conv layer): the same five convs without
groups and without bias (BN's bias takes its place), each conv -> BN -> ReLU, the same pools and
fc6-fc8 with dropout 0.5. 62,379,720 parameters at 1000 classes (incl. BN scale/bias).

Input x [B, H, W, 3] NHWC, 227x227 as in Caffe. Inputs smaller than 227 (e.g. torchvision's
224) are zero-padded to 227 before conv1 (224: 1 pixel top/left, 2 bottom/right), which keeps
Caffe's geometry (conv1 55x55 ... pool5 6x6x256 = 9216 fc6 inputs). Output float32 [B, classes].
Dropout uses the "dropout" rng stream when train=True.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from lars_jax.models import conv as conv_ops
from lars_jax.models.layers import GroupedBatchNorm

INPUT_SIZE = 227


def lrn(x, local_size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Caffe's ACROSS_CHANNELS LRN on x [..., C]: x / (k + alpha/n * sum_window x^2)^beta.

    The window is n channels centred on c, zero-padded at the edges; Caffe divides alpha by n
    (PyTorch's LocalResponseNorm does too). Computed in float32 for bf16 inputs.
    """
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    half = local_size // 2
    window = (1,) * (x.ndim - 1) + (local_size,)
    padding = ((0, 0),) * (x.ndim - 1) + ((half, local_size - 1 - half),)
    sq_sum = lax.reduce_window(lax.square(x32), 0.0, lax.add, window, (1,) * x.ndim, padding)
    return (x32 / (k + (alpha / local_size) * sq_sum) ** beta).astype(x.dtype)


def _pad_to_input_size(x):
    dh, dw = max(0, INPUT_SIZE - x.shape[1]), max(0, INPUT_SIZE - x.shape[2])
    if dh or dw:
        x = jnp.pad(x, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))
    return x


def _pool(x):
    return conv_ops.max_pool(x, (3, 3), (2, 2), padding="VALID")  # == nn.max_pool, elementwise gradient


_CONVS = (  # (features, kernel, stride, padding, caffe group, caffe bias init)
    (96, 11, 4, 0, 1, 0.0),
    (256, 5, 1, 2, 2, 0.1),
    (384, 3, 1, 1, 1, 0.0),
    (384, 3, 1, 1, 2, 0.1),
    (256, 3, 1, 1, 2, 0.1),
)


class _Classifier(nn.Module):
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> fc8 on the flattened pool5 output."""

    num_classes: int
    dropout_rate: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, train: bool):
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
        x = x.reshape((x.shape[0], -1))
        for i, (std, b) in enumerate(((0.005, 0.1), (0.005, 0.1))):
            x = dense(4096, kernel_init=nn.initializers.normal(std),
                      bias_init=nn.initializers.constant(b), name=f"fc{6 + i}")(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
        x = dense(self.num_classes, kernel_init=nn.initializers.normal(0.01), name="fc8")(x)
        return x.astype(jnp.float32)


class AlexNet(nn.Module):
    """BVLC reference AlexNet with LRN and grouped convs (see module docstring)."""

    num_classes: int = 1000
    dropout_rate: float = 0.5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = _pad_to_input_size(x.astype(self.dtype))
        for i, (f, k, s, p, groups, b) in enumerate(_CONVS):
            x = nn.Conv(f, (k, k), (s, s), padding=((p, p), (p, p)), feature_group_count=groups,
                        kernel_init=nn.initializers.normal(0.01),
                        bias_init=nn.initializers.constant(b), dtype=self.dtype,
                        param_dtype=jnp.float32, name=f"conv{i + 1}")(x)
            x = nn.relu(x)
            if i < 2:
                x = lrn(x)
            if i in (0, 1, 4):
                x = _pool(x)
        return _Classifier(self.num_classes, self.dropout_rate, self.dtype, name="classifier")(
            x, train)


class AlexNetBN(nn.Module):
    """AlexNet-BN: conv -> BN -> ReLU for every conv, no LRN, no groups (see module docstring)."""

    num_classes: int = 1000
    dropout_rate: float = 0.5
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_group_size: int | None = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = _pad_to_input_size(x.astype(self.dtype))
        for i, (f, k, s, p, _, _) in enumerate(_CONVS):
            x = nn.Conv(f, (k, k), (s, s), padding=((p, p), (p, p)), use_bias=False,
                        kernel_init=nn.initializers.normal(0.01), dtype=self.dtype,
                        param_dtype=jnp.float32, name=f"conv{i + 1}")(x)
            x = GroupedBatchNorm(use_running_average=not train, group_size=self.bn_group_size,
                                 momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                 dtype=self.dtype, name=f"bn{i + 1}")(x)
            x = nn.relu(x)
            if i in (0, 1, 4):
                x = _pool(x)
        return _Classifier(self.num_classes, self.dropout_rate, self.dtype, name="classifier")(
            x, train)
