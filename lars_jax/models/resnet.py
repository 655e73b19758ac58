"""ResNets: ImageNet ResNet-18/34/50/101 (v1 and v1.5) and CIFAR ResNet-20/56.

ImageNet models follow torchvision's `resnet.py` layer for layer (He et al. 2016, "Deep Residual
Learning for Image Recognition", Table 1): 7x7/2 stem conv (pad 3), BN, ReLU, 3x3/2 max pool
(pad 1), four stages of 64/128/256/512 base channels, global average pool, fc with bias. Convs
have no bias, every conv is followed by BN, projection shortcuts (1x1 conv + BN) where the shape
changes ("option B"). Padding is explicit and symmetric like PyTorch's (flax's "SAME" would pad
stride-2 layers asymmetrically). Parameter counts equal torchvision's: ResNet-18 11,689,512;
ResNet-34 21,797,672; ResNet-50 25,557,032; ResNet-101 44,549,160 (1000 classes).

variant (bottleneck blocks only; basic blocks put the stride in their first 3x3 either way):
  "v1.5" (default): stride 2 in the 3x3 conv of a downsampling bottleneck (torchvision, NVIDIA,
    MLPerf reference); about 4.1 GMACs per 224x224 image for ResNet-50.
  "v1": stride 2 in the first 1x1 conv (the original paper / Caffe model); same parameters,
    about 3.9 GMACs.

CIFAR ResNets (He et al. 2016 Sec. 4.2): 3x3 conv(16) stem, three stages of n basic blocks with
16/32/64 channels (depth 6n+2: ResNet-20 n=3, ResNet-56 n=9), global average pool, fc. Shortcuts
are option A (parameter free: subsample by 2 and zero-pad the new channels), as in the paper's
CIFAR experiments; ResNet-20 has 269,722 parameters (published "0.27M"), ResNet-56 853,018
("0.85M"), both at 10 classes.

Input x [B, H, W, C] NHWC; output float32 logits [B, num_classes].
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax.numpy as jnp
from flax import linen as nn

from lars_jax.models import conv as conv_ops
from lars_jax.models.layers import GroupedBatchNorm, conv_kernel_init


def _pad(k: int):
    return ((k // 2, k // 2), (k // 2, k // 2))


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34, CIFAR ResNets). x [B, H, W, Cin] -> [B, H/s, W/s, filters]."""

    filters: int
    strides: int
    conv: nn.Module
    norm: nn.Module
    variant: str = "v1.5"  # no effect: the stride is in the first 3x3 in both variants
    shortcut: str = "B"  # "B": 1x1 projection where shapes change; "A": subsample + zero-pad

    @nn.compact
    def __call__(self, x):
        y = self.conv(self.filters, (3, 3), (self.strides, self.strides), padding=_pad(3),
                      name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = self.conv(self.filters, (3, 3), padding=_pad(3), name="conv2")(y)
        y = self.norm(last=True, name="bn2")(y)
        return nn.relu(y + _shortcut(self, x, y.shape[-1]))


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) (ResNet-50/101). x [B,H,W,Cin] -> [B,H/s,W/s,4*filters]."""

    filters: int
    strides: int
    conv: nn.Module
    norm: nn.Module
    variant: str = "v1.5"
    shortcut: str = "B"

    @nn.compact
    def __call__(self, x):
        s1, s3 = (1, self.strides) if self.variant == "v1.5" else (self.strides, 1)
        y = self.conv(self.filters, (1, 1), (s1, s1), padding="VALID", name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = self.conv(self.filters, (3, 3), (s3, s3), padding=_pad(3), name="conv2")(y)
        y = nn.relu(self.norm(name="bn2")(y))
        y = self.conv(4 * self.filters, (1, 1), padding="VALID", name="conv3")(y)
        y = self.norm(last=True, name="bn3")(y)
        return nn.relu(y + _shortcut(self, x, y.shape[-1]))


def _shortcut(block, x, out_channels):
    if x.shape[-1] == out_channels and block.strides == 1:
        return x
    if block.shortcut == "A":
        x = x[:, ::block.strides, ::block.strides, :]
        extra = out_channels - x.shape[-1]
        return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    x = block.conv(out_channels, (1, 1), (block.strides, block.strides), padding="VALID",
                   name="proj_conv")(x)
    return block.norm(name="proj_bn")(x)


class _Norm:
    """Builds the BN layers of one model; `last=True` marks the last BN of a residual branch."""

    def __init__(self, train, dtype, momentum, epsilon, group_size, zero_init_last_bn):
        self.kw = dict(use_running_average=not train, dtype=dtype, momentum=momentum,
                       epsilon=epsilon, group_size=group_size)
        self.zero_last = zero_init_last_bn

    def __call__(self, last=False, **kw):
        # Zero-init of the last BN scale makes each block start as the identity (Goyal et al.
        # 2017 Sec. 5.1), which helps large-batch warm starts.
        init = nn.initializers.zeros if (last and self.zero_last) else nn.initializers.ones
        return GroupedBatchNorm(scale_init=init, **self.kw, **kw)


class ResNet(nn.Module):
    """ImageNet-style ResNet (torchvision layout). See the module docstring."""

    stage_sizes: Sequence[int]
    block_cls: type
    num_classes: int = 1000
    num_filters: int = 64
    variant: str = "v1.5"
    zero_init_last_bn: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_group_size: int | None = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        if self.variant not in ("v1", "v1.5"):
            raise ValueError(f"variant must be 'v1' or 'v1.5', got {self.variant!r}")
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                                 param_dtype=jnp.float32, kernel_init=conv_kernel_init(),
                                 # lax's conv; a faster weight gradient on CPU (models/conv.py)
                                 conv_general_dilated=conv_ops.conv_general_dilated)
        norm = _Norm(train, self.dtype, self.bn_momentum, self.bn_epsilon, self.bn_group_size,
                     self.zero_init_last_bn)
        x = x.astype(self.dtype)
        x = conv(self.num_filters, (7, 7), (2, 2), padding=_pad(7), name="stem_conv")(x)
        x = nn.relu(norm(name="stem_bn")(x))
        x = conv_ops.max_pool(x, (3, 3), (2, 2), padding=_pad(3))  # == nn.max_pool, elementwise gradient
        for i, n_blocks in enumerate(self.stage_sizes):
            for j in range(n_blocks):
                x = self.block_cls(self.num_filters * 2**i, 2 if (i > 0 and j == 0) else 1,
                                   conv=conv, norm=norm, variant=self.variant,
                                   name=f"stage{i + 1}_block{j}")(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="fc")(x)
        return x.astype(jnp.float32)


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2) with option-A shortcuts (He et al. 2016 Sec. 4.2); x [B, 32, 32, 3]."""

    depth: int = 20
    num_classes: int = 10
    zero_init_last_bn: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_group_size: int | None = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        if (self.depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {self.depth}")
        n = (self.depth - 2) // 6
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                                 param_dtype=jnp.float32, kernel_init=conv_kernel_init(),
                                 # lax's conv; a faster weight gradient on CPU (models/conv.py)
                                 conv_general_dilated=conv_ops.conv_general_dilated)
        norm = _Norm(train, self.dtype, self.bn_momentum, self.bn_epsilon, self.bn_group_size,
                     self.zero_init_last_bn)
        x = x.astype(self.dtype)
        x = conv(16, (3, 3), padding=_pad(3), name="stem_conv")(x)
        x = nn.relu(norm(name="stem_bn")(x))
        for i, filters in enumerate((16, 32, 64)):
            for j in range(n):
                x = BasicBlock(filters, 2 if (i > 0 and j == 0) else 1, conv=conv, norm=norm,
                               shortcut="A", name=f"stage{i + 1}_block{j}")(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="fc")(x)
        return x.astype(jnp.float32)


IMAGENET_STAGES = {  # depth -> (blocks per stage, block), He et al. 2016 Table 1
    18: ([2, 2, 2, 2], BasicBlock),
    34: ([3, 4, 6, 3], BasicBlock),
    50: ([3, 4, 6, 3], BottleneckBlock),
    101: ([3, 4, 23, 3], BottleneckBlock),
}
