"""ImageNet preprocessing as TensorFlow ops on JPEG bytes (call only inside tf.data maps).

Train: Inception-style random-resized crop (area 8%-100% of the image, aspect ratio 3/4-4/3, as in
Szegedy et al. 2015 and torchvision's RandomResizedCrop) decoded with decode_and_crop_jpeg (only
the crop window is decoded), bilinear resize to S x S, horizontal flip with probability 1/2.
Eval (and train with augmentation off): central crop of 224/256 of the shorter side, resized to
S x S; for S = 224 the same as "resize shorter side to 256, centre crop 224", but decoding only
the crop. Output float32 [S, S, 3], normalised with the ImageNet RGB mean/std below.
Randomness is stateless: the caller passes a seed int32/int64 [2] per example.
"""
from __future__ import annotations

import tensorflow as tf

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
AREA_RANGE = (0.08, 1.0)
ASPECT_RANGE = (3 / 4, 4 / 3)
EVAL_CROP_FRACTION = 224 / 256


def normalise(image):
    """uint8/float [H, W, 3] in 0..255 -> float32 (x - mean) / std."""
    return (tf.cast(image, tf.float32) - MEAN_RGB) / STDDEV_RGB


def train_image(jpeg, seed, size: int):
    """JPEG bytes, seed [2] -> float32 [size, size, 3], random-resized crop + flip."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.image.extract_jpeg_shape(jpeg)
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
    # min_object_covered=0: the area range alone bounds the crop. If 10 draws fail to fit, the op
    # returns the whole image (fine for ImageNet's aspect ratios).
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, whole_image, seed=crop_seed, min_object_covered=0.0,
        aspect_ratio_range=ASPECT_RANGE, area_range=AREA_RANGE, max_attempts=10)
    window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, [size, size], method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return normalise(image)


def eval_image(jpeg, size: int):
    """JPEG bytes -> float32 [size, size, 3], central crop of 224/256 of the shorter side."""
    shape = tf.image.extract_jpeg_shape(jpeg)
    h, w = shape[0], shape[1]
    side = tf.cast(EVAL_CROP_FRACTION * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
    window = tf.stack([(h - side + 1) // 2, (w - side + 1) // 2, side, side])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, [size, size], method="bilinear")
    return normalise(image)
