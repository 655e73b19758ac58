"""lars_jax: large-batch data-parallel training with LARS in JAX/Flax."""

__version__ = "0.1.0"
