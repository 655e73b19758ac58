"""Tests of lars_jax.data: real Fashion-MNIST against its IDX files, sharding, resume, eval padding,
tfds-mocked ImageNet / CIFAR-10 pipelines, and the errors for absent data."""
import collections
import gzip
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from lars_jax import configs, data
from lars_jax.data import base, fashion_mnist, in_memory, tfds_util

IDX_DIR = "/usr/share/datasets/fashion-mnist"
needs_idx = pytest.mark.skipif(not os.path.exists(os.path.join(IDX_DIR, "t10k-labels-idx1-ubyte.gz")),
                               reason="needs `sudo apt-get install -y dataset-fashion-mnist`")
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530  # published in the fashion_mnist module doc


SEED = 20261201  # of the train order and augmentation, where a test needs no fresh one


def _config(**overrides):
    """The base config's data part (config.data) with `overrides`; `dataset` sets its name."""
    c = configs.get_base_config().data
    for k, v in overrides.items():
        c["name" if k == "dataset" else k] = v
    return c


def _read_idx(name):
    """Independent reader: gzip + np.frombuffer past the fixed IDX header."""
    with gzip.open(os.path.join(IDX_DIR, name), "rb") as f:
        raw = f.read()
    if "images" in name:
        return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(raw, np.uint8, offset=8)


def _to_pixels(image):
    """Normalised float32 [..., 28, 28, 1] -> uint8 [..., 28, 28], checking it was exact."""
    x = (image[..., 0] * FASHION_STD + FASHION_MEAN) * 255
    np.testing.assert_allclose(x, np.round(x), atol=2e-3)
    return np.round(x).astype(np.uint8)


def _multiset(images, labels):
    return collections.Counter(zip((im.tobytes() for im in images), labels.tolist()))


@pytest.fixture(scope="session")
def fashion():
    """Prepares Fashion-MNIST once into the default tfds data_dir (~16 s the first time ever)."""
    config = _config(dataset="fashion_mnist", augment=False)
    assert data.get_info(config) == data.DatasetInfo("fashion_mnist", 60000, 10000, (28, 28, 1), 10)
    return config


@pytest.fixture(scope="session")
def idx_test():
    return _read_idx("t10k-images-idx3-ubyte.gz"), _read_idx("t10k-labels-idx1-ubyte.gz")


def _random_split(rng, n, shape=(8, 8, 1)):
    """Random images; label i = example identity i (in_memory does not look at classes)."""
    return in_memory.Split(images=rng.integers(0, 256, (n, *shape), dtype=np.uint8),
                           labels=np.arange(n, dtype=np.int32))


RAW = in_memory.Preprocessing(mean=(0.0,), std=(1 / 255,), pad=2, flip=True)  # image = pixel value


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


@needs_idx
def test_fashion_train_epoch_is_the_idx_train_set(fashion, rng):
    images, labels = _read_idx("train-images-idx3-ubyte.gz"), _read_idx("train-labels-idx1-ubyte.gz")
    batches = _take(data.train_iterator(fashion, seed=SEED, local_batch_size=6000), 10)  # one whole epoch
    for b in batches[:2]:
        assert b["image"].shape == (6000, 28, 28, 1) and b["image"].dtype == np.float32
        assert b["label"].shape == (6000,) and b["label"].dtype == np.int32
        assert b["image"].min() == pytest.approx(-FASHION_MEAN / FASHION_STD, abs=1e-4)
        assert b["image"].max() == pytest.approx((1 - FASHION_MEAN) / FASHION_STD, abs=1e-4)
        assert 0 <= b["label"].min() and b["label"].max() <= 9
    got = np.concatenate([_to_pixels(b["image"]) for b in batches])
    got_labels = np.concatenate([b["label"] for b in batches])
    assert _multiset(got, got_labels) == _multiset(images, labels)  # every example, right label
    # A few examples, pixel by pixel, against the IDX file they came from.
    where = {im.tobytes(): i for i, im in enumerate(images)}
    for j in rng.choice(60000, 5, replace=False):
        i = where[got[j].tobytes()]
        expected = (images[i].astype(np.float64) / 255 - FASHION_MEAN) / FASHION_STD
        np.testing.assert_allclose(batches[j // 6000]["image"][j % 6000, ..., 0], expected, atol=1e-5)
        assert got_labels[j] == labels[i]
    # The published normalisation constants are the train-split statistics.
    assert abs(np.mean([b["image"].mean() for b in batches])) < 2e-3
    assert np.sqrt(np.mean([(b["image"] ** 2).mean() for b in batches])) == pytest.approx(1, abs=2e-3)


@needs_idx
@pytest.mark.parametrize("process_count", [2, 4])
def test_fashion_shards_are_a_split_of_the_global_batch(fashion, process_count):
    config = _config(**{**fashion.to_dict(), "augment": True})
    global_batch = 1200  # 50 steps per epoch
    for start in (0, 49):  # the first steps; an epoch boundary
        single = _take(data.train_iterator(config, seed=SEED, local_batch_size=global_batch,
                                           start_step=start), 3)
        parts = [_take(data.train_iterator(config, seed=SEED, local_batch_size=global_batch // process_count,
                                           process_index=p, process_count=process_count,
                                           start_step=start), 3) for p in range(process_count)]
        for step in range(3):
            for key in ("image", "label"):
                np.testing.assert_array_equal(
                    np.concatenate([parts[p][step][key] for p in range(process_count)]),
                    single[step][key])


@pytest.mark.parametrize("process_count", [2, 4])
def test_shards_disjoint_and_complete_by_identity(process_count, rng, seed):
    n, local = 203, 12
    split = _random_split(rng, n)
    kwargs = dict(seed=seed, augment_images=True, start_step=0)
    single = _take(in_memory.train_batches(split, RAW, local_batch_size=local * process_count,
                                           **kwargs), 12)
    parts = [_take(in_memory.train_batches(split, RAW, local_batch_size=local, process_index=p,
                                           process_count=process_count, **kwargs), 12)
             for p in range(process_count)]
    steps_per_epoch = n // (local * process_count)
    seen = []
    for step in range(steps_per_epoch):
        ids = [parts[p][step]["label"] for p in range(process_count)]
        np.testing.assert_array_equal(np.concatenate(ids), single[step]["label"])
        np.testing.assert_array_equal(np.concatenate([parts[p][step]["image"]
                                                      for p in range(process_count)]),
                                      single[step]["image"])
        seen.extend(np.concatenate(ids).tolist())
    # One epoch: every example at most once, all but the dropped remainder present.
    assert len(set(seen)) == len(seen) == steps_per_epoch * local * process_count
    assert set(seen) <= set(range(n))
    # The next epoch is a different order.
    nxt = np.concatenate([parts[p][steps_per_epoch]["label"] for p in range(process_count)])
    assert not np.array_equal(nxt, single[0]["label"])


def test_resume_equals_uninterrupted_across_epochs(rng, seed):
    split = _random_split(rng, 100)  # batch 8: 12 steps per epoch, 4 examples dropped each epoch
    kwargs = dict(seed=seed, augment_images=True, local_batch_size=8)
    full = _take(in_memory.train_batches(split, RAW, **kwargs), 30)
    for k in (5, 11, 12, 25):
        resumed = _take(in_memory.train_batches(split, RAW, start_step=k, **kwargs), 30 - k)
        for a, b in zip(full[k:], resumed):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])
    epochs = [np.concatenate([b["label"] for b in full[e * 12:(e + 1) * 12]]) for e in (0, 1)]
    assert all(len(set(e.tolist())) == 96 for e in epochs) and not np.array_equal(*epochs)


@needs_idx
def test_fashion_resume_through_the_registry(fashion):
    config = _config(**{**fashion.to_dict(), "augment": True})
    full = _take(data.train_iterator(config, seed=SEED, local_batch_size=12000), 7)  # 5 steps per epoch
    resumed = _take(data.train_iterator(config, seed=SEED, local_batch_size=12000, start_step=4), 3)
    for a, b in zip(full[4:], resumed):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_crop_and_flip_against_a_naive_loop(rng, seed):
    split = _random_split(rng, 64, shape=(6, 7, 2))
    batch = next(in_memory.train_batches(split, RAW, seed=seed,
                                         augment_images=True, local_batch_size=64))
    out = np.round(batch["image"]).astype(np.int64)
    offsets, flips = set(), []
    for image, i in zip(out, batch["label"]):
        padded = np.pad(split.images[i].astype(np.int64), ((2, 2), (2, 2), (0, 0)))
        matches = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                   if np.array_equal(image, (padded[dy:dy + 6, dx:dx + 7][:, ::-1] if f
                                             else padded[dy:dy + 6, dx:dx + 7]))]
        assert matches, "output is not a padded crop (or its mirror) of its source image"
        offsets.add(matches[0][:2])
        flips.append(matches[0][2])
    assert len(offsets) > 10 and 10 < sum(flips) < 54


@needs_idx
def test_fashion_eval_covers_each_example_once(fashion, idx_test):
    passes = [list(data.eval_iterator(fashion, local_batch_size=7, process_index=p, process_count=3))
              for p in range(3)]
    assert [len(b) for b in passes] == [477] * 3  # ceil(10000 / 21), the same on every process
    images, labels, total = [], [], 0
    for batches in passes:
        for b in batches:
            assert b["image"].shape == (7, 28, 28, 1) and b["mask"].dtype == np.float32
            real = b["mask"] == 1
            assert np.all(b["image"][~real] == 0) and np.all(b["label"][~real] == 0)
            assert set(np.unique(b["mask"])) <= {0.0, 1.0}
            total += b["mask"].sum()
            images.append(_to_pixels(b["image"][real]))
            labels.append(b["label"][real])
    assert total == 10000
    assert _multiset(np.concatenate(images), np.concatenate(labels)) == _multiset(*idx_test)


def test_in_memory_eval_padding_random_sizes(rng):
    n, local, count = int(rng.integers(50, 200)), int(rng.integers(3, 17)), int(rng.integers(2, 6))
    split = _random_split(rng, n)
    seen, lengths = [], set()
    for p in range(count):
        batches = list(in_memory.eval_batches(split, RAW, local_batch_size=local, process_index=p,
                                              process_count=count))
        lengths.add(len(batches))
        for b in batches:
            seen.extend(b["label"][b["mask"] == 1].tolist())
    assert lengths == {-(-n // (local * count))}
    assert sorted(seen) == list(range(n))


def _write_metadata(name, data_dir, sizes):
    """A dataset_info.json with split sizes, so mock_data knows the splits (else they are empty)."""
    import tensorflow_datasets as tfds
    builder = tfds.builder(name, data_dir=data_dir)
    builder.info.set_splits(tfds.core.SplitDict(
        [tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0) for s, n in sizes.items()]))
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)


def test_imagenet_pipeline_on_mock_data(tmp_path, monkeypatch, seed):
    import tensorflow_datasets as tfds
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    _write_metadata("imagenet2012", str(tmp_path), {"train": 12, "validation": 12})
    config = _config(dataset="imagenet2012", data_dir=str(tmp_path), image_size=64)
    assert data.get_info(config) == data.DatasetInfo("imagenet2012", 1281167, 50000, (64, 64, 3), 1000)
    lo, hi = -0.485 / 0.229, (1 - 0.406) / 0.225  # normalised range of 0..255 pixels
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        full = _take(data.train_iterator(config, seed=seed, local_batch_size=4), 6)  # 3 steps per epoch
        for b in full:
            assert b["image"].shape == (4, 64, 64, 3) and b["image"].dtype == np.float32
            assert b["label"].shape == (4,) and b["label"].dtype == np.int32
            assert np.isfinite(b["image"]).all() and lo - 1e-4 <= b["image"].min()
            assert b["image"].max() <= hi + 1e-4 and b["image"].std() > 0.1
            assert 0 <= b["label"].min() and b["label"].max() < 1000
        resumed = _take(data.train_iterator(config, seed=seed, local_batch_size=4, start_step=2), 4)
        for a, b in zip(full[2:], resumed):  # exact resume, across the epoch boundary
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])
        assert not np.array_equal(full[0]["image"], full[3]["image"])  # epochs reshuffled
        plain = next(data.train_iterator(_config(**{**config.to_dict(), "augment": False}), seed=seed,
                                         local_batch_size=4))
        assert plain["image"].shape == (4, 64, 64, 3)
        for count in (1, 2):
            passes = [list(data.eval_iterator(config, local_batch_size=5, process_index=p,
                                              process_count=count)) for p in range(count)]
            assert len({len(b) for b in passes}) == 1
            masks = np.concatenate([b["mask"] for batches in passes for b in batches])
            assert masks.sum() == 12 and set(np.unique(masks)) == {0.0, 1.0}
            for b in (b for batches in passes for b in batches):
                assert b["image"].shape == (5, 64, 64, 3) and b["label"].dtype == np.int32
                assert np.all(b["image"][b["mask"] == 0] == 0)


def test_cifar10_on_mock_data(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    _write_metadata("cifar10", str(tmp_path), {"train": 40, "test": 40})
    config = _config(dataset="cifar10", data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=40, data_dir=str(tmp_path)):
        assert data.get_info(config) == data.DatasetInfo("cifar10", 50000, 10000, (32, 32, 3), 10)
        b = next(data.train_iterator(config, seed=SEED, local_batch_size=8, process_index=1, process_count=2))
        assert b["image"].shape == (8, 32, 32, 3) and b["image"].dtype == np.float32
        assert b["label"].dtype == np.int32 and 0 <= b["label"].min() and b["label"].max() <= 9
        assert -2.1 < b["image"].min() and b["image"].max() < 2.2
        batches = list(data.eval_iterator(config, local_batch_size=16))
        assert len(batches) == 3 and sum(b["mask"].sum() for b in batches) == 40


def test_fashion_missing_offline(tmp_path, monkeypatch):
    (tmp_path / "idx").mkdir()
    monkeypatch.setenv(fashion_mnist.DIR_ENV, str(tmp_path / "idx"))
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    config = _config(dataset="fashion_mnist", data_dir=str(tmp_path / "tfds"))
    for call in (lambda: data.get_info(config),
                 lambda: data.train_iterator(config, seed=SEED, local_batch_size=8)):
        with pytest.raises(data.DataNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
            call()


def test_fashion_missing_download_fails(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def no_network(*args, **kwargs):
        raise ConnectionError("no network in this test")

    (tmp_path / "idx").mkdir()
    monkeypatch.setenv(fashion_mnist.DIR_ENV, str(tmp_path / "idx"))
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    monkeypatch.setattr(tfds_util, "unreachable", lambda url: None)  # the host answers; the download fails
    config = _config(dataset="fashion_mnist", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(data.DataNotFoundError, match="apt-get install -y dataset-fashion-mnist") as e:
        data.get_info(config)
    assert "no network in this test" in str(e.value)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dataset,fix", [("fashion_mnist", "apt-get install -y dataset-fashion-mnist"),
                                         ("cifar10", "download_and_prepare()")])
def test_missing_data_without_network_fails_in_seconds(tmp_path, monkeypatch, dataset, fix):
    # No DNS, as on an air-gapped host: tfds' download would retry for minutes before failing.
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    (tmp_path / "idx").mkdir()
    monkeypatch.setenv(fashion_mnist.DIR_ENV, str(tmp_path / "idx"))
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    config = _config(dataset=dataset, data_dir=str(tmp_path / "tfds"))
    started = time.time()
    with pytest.raises(data.DataNotFoundError, match=fix) as e:
        data.get_info(config)
    assert time.time() - started < 20 and "cannot connect" in str(e.value)


def _gzip(path, payload: bytes):
    with gzip.open(path, "wb") as f:
        f.write(payload)


@needs_idx
@pytest.mark.parametrize("damage", ["truncated_gzip", "short_idx", "not_idx"])
def test_a_damaged_idx_file_is_named(tmp_path, monkeypatch, damage):
    idx = tmp_path / "idx"
    shutil.copytree(fashion_mnist.DEBIAN_DIR, idx)
    bad = idx / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.open(bad).read()
    if damage == "truncated_gzip":
        bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2])
    elif damage == "short_idx":
        _gzip(bad, raw[:-100])  # the header says 10,000 labels; 9,900 follow
    else:
        _gzip(bad, b"not an IDX file at all")
    monkeypatch.setenv(fashion_mnist.DIR_ENV, str(idx))
    config = _config(dataset="fashion_mnist", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(data.DataNotFoundError, match=re.escape(str(bad))):
        data.train_iterator(config, seed=SEED, local_batch_size=8)


def _idx(path, array):
    _gzip(path, bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes())


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_preparing_from_debian_files_says_so_in_plain_lines(tmp_path, rng):
    # Tiny IDX files (6 train, 4 test images) stand in for Debian's; stdout and stderr go to a
    # file, as in a redirected log.
    idx = tmp_path / "idx"
    idx.mkdir()
    for split, n in (("train", 6), ("test", 4)):
        images, labels = fashion_mnist.FILES[split]
        _idx(idx / images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _idx(idx / labels, rng.integers(0, 10, n, dtype=np.uint8))
    code = ("from absl import logging; logging.set_verbosity(logging.INFO)\n"
            "from lars_jax import configs; from lars_jax.data import fashion_mnist as fm\n"
            "fm.SHAPES = {'train': ((6, 28, 28), (6,)), 'test': ((4, 28, 28), (4,))}\n"
            f"c = configs.get_base_config().data; c.data_dir = {str(tmp_path / 'tfds')!r}\n"
            "fm.ensure_prepared(c)\n")
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.run([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, timeout=120,
                              env={**os.environ, fashion_mnist.DIR_ENV: str(idx), "TF_CPP_MIN_LOG_LEVEL": "2"})
    out = (tmp_path / "log").read_text()
    assert proc.returncode == 0, out[-3000:]
    assert "\r" not in out and "\x1b[" not in out, out  # no progress bars: plain lines
    for untrue in ("Downloading", "Unknown size", "downloaded and prepared"):  # tfds' lines for a download
        assert untrue not in out, out
    assert f"from the IDX files in {idx} (nothing is downloaded)" in out and "prepared in" in out, out


def damaged_copy(tmp_path, damage) -> str:
    """A tfds data_dir holding a copy of the prepared Fashion-MNIST with one file damaged; returns
    the damaged file's path."""
    prepared = fashion_mnist.ensure_prepared(_config(dataset="fashion_mnist"))
    shutil.copytree(os.path.join(prepared, "fashion_mnist"), tmp_path / "tfds" / "fashion_mnist")
    version = next((tmp_path / "tfds" / "fashion_mnist").iterdir())
    if damage == "train_truncated":
        bad = next(version.glob("fashion_mnist-train.tfrecord*"))
        os.truncate(bad, bad.stat().st_size // 3)
    elif damage == "info_garbage":
        bad = version / "dataset_info.json"
        bad.write_text("garbage{")
    else:  # a test split of random bytes, found only at the first evaluation before
        bad = next(version.glob("fashion_mnist-test.tfrecord*"))
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, bad.stat().st_size, dtype=np.uint8).tobytes())
    return str(bad)


@needs_idx
@pytest.mark.parametrize("damage", ["train_truncated", "info_garbage", "test_garbage"])
def test_a_damaged_prepared_dataset_names_the_file_and_the_command_that_prepares_it_again(tmp_path, damage):
    bad = damaged_copy(tmp_path, damage)
    config = _config(dataset="fashion_mnist", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(data.DataNotFoundError) as failed:
        data.check(config)  # what a run does before training: every split it reads
    message = str(failed.value)
    fix = f"`rm -rf {os.path.dirname(bad)}`"
    assert bad in message and fix in message and "\n" not in message and len(message) < 700, message
    subprocess.run(fix.strip("`"), shell=True, check=True)  # the fix, as printed: the rerun prepares it again
    assert not base.tfds_prepared(config.data_dir, "fashion_mnist") and fashion_mnist.DATASET.available(config)


def test_imagenet_missing(tmp_path):
    config = _config(dataset="imagenet2012", data_dir=str(tmp_path))
    for call in (lambda: data.get_info(config),
                 lambda: data.train_iterator(config, seed=SEED, local_batch_size=8)):
        with pytest.raises(data.DataNotFoundError) as e:
            call()
        message = str(e.value)
        for needle in (os.path.join(str(tmp_path), "downloads", "manual"),
                       "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
            assert needle in message
    # Each command it gives runs as printed: it reaches tfds' builder, which asks for the tar files.
    commands = re.findall(r"`([^`]+)`", message)
    assert commands
    for command in commands:
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
        assert "Manual directory" in proc.stderr, (command, proc.stderr[-3000:])
        assert os.path.join(str(tmp_path), "downloads", "manual") in proc.stderr


def test_synthetic_without_tensorflow():
    code = ("import sys; from lars_jax import configs, data\n"
            "c = configs.get_base_config().data; c.name = 'synthetic'; c.image_size = 16\n"
            "c.synthetic_num_classes = 7\n"
            "i = data.get_info(c); b = next(data.train_iterator(c, seed=0, local_batch_size=3))\n"
            "e = [list(data.eval_iterator(c, local_batch_size=100, process_index=p, process_count=3))"
            " for p in range(3)]\n"
            "assert i == data.DatasetInfo('synthetic', 1281167, 1024, (16, 16, 3), 7), i\n"
            "assert b['image'].shape == (3, 16, 16, 3) and b['image'].dtype.name == 'float32'\n"
            "assert b['label'].dtype.name == 'int32' and b['label'].max() < 7\n"
            "assert {len(x) for x in e} == {4} and sum(b['mask'].sum() for x in e for b in x) == 1024\n"
            "c.synthetic_num_eval = 50; e = list(data.eval_iterator(c, local_batch_size=16))\n"
            "assert data.get_info(c).num_eval == 50 and [b['mask'].sum() for b in e] == [16, 16, 16, 2]\n"
            "assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))


@needs_idx
def test_validation_split_is_the_last_10000_train_examples(fashion):
    # Deterministic: the last 10,000 examples of tfds' stored train order; the other 50,000 train.
    cfg = _config(**{**fashion.to_dict(), "validation_examples": 10000})
    info = data.get_info(cfg)
    assert (info.num_train, info.num_validation, info.num_eval) == (50000, 10000, 10000)
    train_epoch = _take(data.train_iterator(cfg, seed=SEED, local_batch_size=5000), 10)
    validation = list(data.eval_iterator(cfg, local_batch_size=2000, split="validation"))
    whole = _take(data.train_iterator(fashion, seed=SEED, local_batch_size=6000), 10)
    as_set = lambda batches: _multiset(np.concatenate([_to_pixels(b["image"]) for b in batches]),  # noqa: E731
                                       np.concatenate([b["label"] for b in batches]))
    held, trained = as_set(validation), as_set(train_epoch)
    assert sum(held.values()) == 10000 and sum(trained.values()) == 50000
    assert held + trained == as_set(whole)  # a split of the 60,000, nothing lost or doubled
    from lars_jax.data import tfds_util
    stored = tfds_util.load_split("fashion_mnist", fashion_mnist.ensure_prepared(cfg), "train")
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in validation]), stored.labels[-10000:])
    with pytest.raises(configs.ConfigError, match="validation_examples"):
        list(data.eval_iterator(fashion, local_batch_size=100, split="validation"))


def test_validation_split_is_refused_where_it_does_not_exist():
    c = configs.get_base_config()
    c.data.name, c.data.validation_examples = "synthetic", 1000
    with pytest.raises(configs.ConfigError, match="config.data.validation_examples: 1000"):
        configs.validate(c)
