"""lars_jax: large-batch data-parallel training with LARS in JAX/Flax."""
import os

__version__ = "0.1.0"


def quiet_tensorflow() -> None:
    """Defaults set before TensorFlow loads (it only reads data here): its C++ INFO/WARNING logs
    off, and its oneDNN kernels off, which would change nothing here but print a notice."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
