"""Test setup: 8 fake CPU devices (set before JAX initialises its backend) and seeded randomness."""
import atexit
import os
import shutil
import tempfile
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

_CACHE_PREFIX = "lars_jax_test_jit_cache_"

# One persistent compilation cache for the session, read by this process and inherited by every
# `python -m lars_jax.main` subprocess: a step that many tests build (the same program) compiles once.
# Under pytest-xdist (-n 2) the workers inherit the controller's folder and each takes its own
# subfolder: JAX writes cache entries in place, so two processes must not share one.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix=_CACHE_PREFIX)
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
elif os.environ.get("PYTEST_XDIST_WORKER") and os.path.basename(
        os.environ["JAX_COMPILATION_CACHE_DIR"]).startswith(_CACHE_PREFIX):
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.environ["JAX_COMPILATION_CACHE_DIR"],
                                                           os.environ["PYTEST_XDIST_WORKER"])

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_platforms", "cpu")

SEED_ENV = "LARS_JAX_TEST_SEED"


@pytest.fixture
def seed(request) -> int:
    """This test's seed: $LARS_JAX_TEST_SEED, else a hash of the test's id (the same every run).
    A failing test reports it, with the command line that replays it."""
    value = int(os.environ.get(SEED_ENV) or zlib.crc32(request.node.nodeid.encode()))
    request.node.user_properties.append(("seed", value))
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    value = dict(item.user_properties).get("seed")
    if report.failed and value is not None:
        report.sections.append(("random seed", f"seed {value}: replay with {SEED_ENV}={value} "
                                                f"pytest '{item.nodeid}'"))
