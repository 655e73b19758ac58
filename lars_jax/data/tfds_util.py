"""Lazy tfds helpers: TensorFlow is imported only when a tfds dataset is actually read."""
from __future__ import annotations

import functools
import glob
import os
import re
import socket
import sys
import urllib.parse

import numpy as np

import lars_jax
from lars_jax.data import base


def import_tfds():
    """(tf, tfds), with TensorFlow kept off any accelerator: it only feeds the host pipeline, and
    tfds' progress bars only on a terminal (their redraws garble a redirected log)."""
    lars_jax.quiet_tensorflow()
    import tensorflow as tf
    import tensorflow_datasets as tfds
    tfds.display_progress_bar(sys.stderr.isatty())  # tqdm draws on stderr
    try:
        tf.config.set_visible_devices([], "GPU")  # leave the GPU memory to JAX
    except RuntimeError:  # already initialised: nothing to change
        pass
    return tf, tfds


def prepare_command(name: str, data_dir: str) -> str:
    """A shell command, runnable as printed from the current directory, that prepares tfds `name`
    in data_dir: this interpreter with tfds' Python API (tfds' own `tfds build` CLI imports
    apache_beam, which the tfds extra does not install)."""
    python = os.path.relpath(sys.executable)
    if python.startswith(os.pardir):
        python = sys.executable
    elif os.sep not in python:
        python = os.path.join(os.curdir, python)
    return (f"{python} -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{name}', data_dir='{data_dir}').download_and_prepare()\"")


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """None if a TCP connection to `url`'s host (or the configured proxy) opens within `timeout`
    seconds, else why not: a download that cannot even connect fails now, not after minutes of
    retries."""
    proxy = os.environ.get("https_proxy") or os.environ.get("HTTPS_PROXY") or os.environ.get("http_proxy") \
        or os.environ.get("HTTP_PROXY")
    target = urllib.parse.urlsplit(proxy or url)
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e})"
    return None


def prepare_or_raise(builder, how_to_get: str, *, url: str) -> None:
    """Downloads and prepares `builder` unless prepared; DataNotFoundError(how_to_get) on failure.
    url: what the download fetches (its host is tried first)."""
    if builder.is_prepared():
        return
    if base.offline():
        raise base.DataNotFoundError(
            f"{builder.name} is not prepared in {builder.data_dir} and downloads are disabled "
            f"({base.OFFLINE_ENV}=1). {how_to_get}")
    why = unreachable(url)
    if why:
        raise base.DataNotFoundError(
            f"{builder.name} is not prepared in {builder.data_dir} and cannot be downloaded: {why}. {how_to_get}")
    try:
        builder.download_and_prepare()
    except Exception as e:  # network, checksum, disk: all mean "not available here"
        raise base.DataNotFoundError(
            f"{builder.name} is not prepared in {builder.data_dir} and downloading it failed "
            f"({type(e).__name__}: {e}). {how_to_get}") from e


def damaged(name: str, data_dir: str, split: str, e: Exception, *, info: bool) -> base.DataNotFoundError:
    """The one-line error for a prepared dataset that cannot be read: names the file (its
    dataset_info.json when `info`, else the split's records) and the command that prepares it again."""
    found = sorted(glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json")))
    version_dir = os.path.dirname(found[-1]) if found else os.path.join(data_dir, name)
    files = sorted(glob.glob(os.path.join(version_dir, f"{name}-{split}.tfrecord*")))
    what = os.path.join(version_dir, "dataset_info.json") if info else ", ".join(files) or f"the {split} split"
    detail = " ".join(re.sub(r"\{\{.*?\}\}", "", str(e)).split("[Op:")[0].split())[:200]
    return base.DataNotFoundError(
        f"the prepared {name} in {data_dir} is damaged: {what} cannot be read ({type(e).__name__}: {detail}); "
        f"prepare it again: `rm -rf {version_dir}`, then rerun the same command")


@functools.lru_cache(maxsize=4)
def load_split(name: str, data_dir: str, split: str) -> base.Split:
    """A prepared tfds split, whole, as numpy (decoded once, then cached for this process);
    DataNotFoundError naming the damaged file if it cannot be read."""
    _, tfds = import_tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - dataset_info.json / features.json unreadable
        raise damaged(name, data_dir, split, e, info=True) from e
    try:
        arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
    except Exception as e:  # noqa: BLE001 - truncated or corrupt records
        raise damaged(name, data_dir, split, e, info=False) from e
    return base.Split(images=np.ascontiguousarray(arrays["image"], dtype=np.uint8),
                      labels=np.asarray(arrays["label"], dtype=np.int32))
