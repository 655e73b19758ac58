"""Command line: `python -m lars_jax.main --config experiments/fashion_mnist.py --workdir DIR`.

Any config field can be overridden: `--config.global_batch_size=4096 --config.total_steps=10`.
Running the same command again resumes from the latest checkpoint in DIR.
Multi-host: pass --coordinator_address/--num_processes/--process_id (jax.distributed.initialize's
arguments) or --distributed to let JAX detect the cluster (SLURM, TPU pods, Open MPI).
"""
from __future__ import annotations

import logging as pylogging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and results.json.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-host runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with auto-detection.")
flags.DEFINE_integer("heartbeat_timeout_seconds", 100,
                     "Multi-host: a process whose peer is silent this long stops with an error.")
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_orbax(record) -> bool:
    # orbax logs every checkpoint's internals at INFO through absl; keep its warnings only.
    return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_quiet_orbax)
    import jax

    if FLAGS.coordinator_address or FLAGS.distributed:
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                   num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
                                   heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
    from lars_jax import configs, data, train

    logging.info("JAX %s: process %d of %d, %d local / %d global devices (%s)", jax.__version__,
                 jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
                 jax.devices()[0].platform)
    try:
        results = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (configs.ConfigError, data.DataNotFoundError, train.NonFiniteLossError) as e:
        raise SystemExit(f"error: {e}") from e  # the message names the fix; no traceback needed
    logging.info("Done: %s", results)


if __name__ == "__main__":
    app.run(main)
