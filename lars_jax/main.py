"""Command line: `python -m lars_jax.main --config experiments/fashion_mnist.py --workdir DIR`.

Any config field can be overridden: `--config.global_batch_size=4096 --config.loop.stop_after_steps=10`.
Running the same command again resumes from the newest intact checkpoint in DIR.
Multi-host: pass --coordinator_address/--num_processes/--process_id (jax.distributed.initialize's
arguments) or --distributed to let JAX detect the cluster (SLURM, TPU pods, Open MPI).

One run at a time per workdir: another run holding it is named and this one refused (exit 2), or
waited for with --wait_for_workdir. A resume must keep every config field that changes the math
(lars_jax.resume); --allow_config_change=FIELD[,FIELD] accepts a deliberate change, recorded in
the workdir.

Exit codes (lars_jax.errors): 0 finished (or stopped at config.loop.stop_after_steps, as asked);
75 preempted by SIGTERM with a checkpoint of the current step (rerun the same command to resume);
130 stopped by Ctrl-C (SIGINT; the first one checkpoints the current step like SIGTERM, a second
stops at once); 2 the command line, the config or the workdir cannot work, or another run holds
the workdir (nothing ran); 1 any other failure. A multi-process
worker runs under a small parent (lars_jax.supervisor) that reports a worker killed by a signal,
e.g. aborted by JAX when a peer dies. A failure the user
can fix prints one line on stderr naming the cause and the fix; --verbose shows the traceback and
every library's log.
"""
from __future__ import annotations

import logging as pylogging
import os
import sys

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags

import lars_jax
from lars_jax.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError
from lars_jax.reporting import QuietLibraries

lars_jax.quiet_tensorflow()

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (experiments/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and results.json.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-host runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with auto-detection.")
flags.DEFINE_integer("heartbeat_timeout_seconds", 100,
                     "Multi-host: a process whose peer is silent this long stops with an error.")
flags.DEFINE_bool("wait_for_workdir", False, "If another run holds --workdir, wait for it to end instead of "
                  "refusing to start.")
flags.DEFINE_list("allow_config_change", [], "Config fields (e.g. schedule.total_steps) a resume may change "
                  "although they change the math; the change is recorded in the workdir.")
flags.DEFINE_bool("verbose", False, "Show full tracebacks and every library's INFO log.")
flags.mark_flags_as_required(["config", "workdir"])

VERBOSE_ENV = "LARS_JAX_VERBOSE"


def _verbose(argv=()) -> bool:
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def _config_path(argv) -> str:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return "?"


def _not_a_config_dict(path: str, config=None) -> str | None:
    """Why the experiment file's get_config() result cannot be used, if it is not a ConfigDict
    (`config`: the result, else the file is loaded again to see)."""
    if config is None:
        from lars_jax import configs
        try:
            config = configs.load_config(path)
        except Exception:  # noqa: BLE001 - the caller reports the original error
            return None
    if isinstance(config, ml_collections.ConfigDict):
        return None
    return (f"--config {path}: get_config() returned a {type(config).__name__}; it must return an "
            f"ml_collections.ConfigDict (start from lars_jax.configs.get_base_config(), as "
            f"experiments/fashion_mnist.py does)")


def _config_error(e: BaseException, argv) -> str:
    """One line for an exception raised while loading the config file or applying overrides."""
    path = _config_path(argv)
    wrong_type = _not_a_config_dict(path)
    if wrong_type:
        return wrong_type
    chain, cause = [], e
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for c in chain:
        if isinstance(c, SyntaxError):
            return f"--config {path}: syntax error at line {c.lineno}: {c.msg}"
        if isinstance(c, AttributeError) and "get_config" in str(c):
            return (f"--config {path}: defines no get_config(); an experiment file returns its ConfigDict "
                    f"from get_config() (see experiments/fashion_mnist.py)")
        if isinstance(c, (AttributeError, KeyError)):
            name = str(c).strip("'\" ")
            overrides = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
            flag = next((o for o in overrides if name in o.split(".")), None)
            if flag:
                return f"{flag}: the config has no field {name!r}; lars_jax/configs.py lists the fields"
    if "No such file" in str(e) or any(isinstance(c, FileNotFoundError) for c in chain):
        return f"--config {path}: no such file"
    return f"--config {path}: {type(e).__name__}: {' '.join(str(e).split())}"


def _parse(argv):
    """absl's flag parsing, with one line (no traceback) for each way it can fail."""
    try:
        rest = FLAGS(argv)
        FLAGS.config.keys()  # config_flags defers a failed load to the first attribute access
        wrong_type = _not_a_config_dict(_config_path(argv), FLAGS.config)
        if wrong_type:
            _fail(wrong_type, EXIT_USAGE)
        return rest
    except flags.Error as e:  # a bad value or a missing required flag: absl's message is clear
        if _verbose(argv):
            raise
        _fail(f"{e} (--helpfull lists the flags)", EXIT_USAGE)
    except Exception as e:  # noqa: BLE001 - anything the config file or an override raised
        if _verbose(argv):
            raise
        _fail(_config_error(e, argv), EXIT_USAGE)


def _hide_closed_event_loop(hook):
    """After orbax's asynchronous write fails, TensorStore's callbacks into orbax's closed asyncio
    loop each raise an unraisable 'Event loop is closed' (hundreds of tracebacks); the failure
    itself is reported in one line by lars_jax.checkpoints."""
    def unraisablehook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
            hook(unraisable)
    return unraisablehook


def train_with_flags(config: ml_collections.ConfigDict) -> dict:
    """train.train_and_evaluate(config, --workdir) as the flags ask (quiet libraries unless
    --verbose, jax.distributed for multi-host, the workdir lock and resume flags); a UserError
    becomes one line on stderr and its exit code."""
    if not _verbose(sys.argv):
        logging.get_absl_handler().addFilter(QuietLibraries())
        sys.unraisablehook = _hide_closed_event_loop(sys.unraisablehook)
        pylogging.getLogger("jax").setLevel(pylogging.WARNING)
    try:
        import jax

        if FLAGS.coordinator_address or FLAGS.distributed:
            jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                       num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
                                       heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
        from lars_jax import train

        return train.train_and_evaluate(config, FLAGS.workdir, allow_changes=FLAGS.allow_config_change,
                                        wait_for_workdir=FLAGS.wait_for_workdir)
    except UserError as e:
        if FLAGS.verbose:
            raise
        _fail(" ".join(str(e).split()), e.exit_code)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}: every option is a --flag (--helpfull lists them)", EXIT_USAGE)
    results = train_with_flags(FLAGS.config)
    logging.info("%s", done_line(results, FLAGS.workdir))
    return results.get("exit_code", 0)


def done_line(results: dict, workdir: str) -> str:
    """The run's last console line: where it stopped, the latest test accuracy (with its step when
    that is not the last one, as after a stop between evaluations) and what to do next."""
    line = f"Done at step {results['final_step']} of {results['total_steps']}"
    accuracy, at = results.get("test_accuracy"), results.get("evaluated_at_step")
    if accuracy is not None:
        line += f", test accuracy {accuracy:.4f}"
        line += f" (evaluated at step {at})" if at not in (None, results["final_step"]) else ""
    return line + ("; stopped: rerun the same command to resume" if results.get("preempted")
                   else f"; results in {os.path.join(workdir, 'results.json')}")


def run() -> None:
    from lars_jax import supervisor

    if supervisor.wanted(sys.argv):
        sys.exit(supervisor.supervise(sys.argv))
    try:
        app.run(main, flags_parser=_parse)
    except KeyboardInterrupt:  # Ctrl-C outside the train loop, or a second one inside it
        if _verbose(sys.argv):
            raise
        _fail("interrupted (Ctrl-C): stopped at once; the checkpoints written so far are intact: rerun the same "
              "command to resume from the newest", EXIT_INTERRUPTED)


if __name__ == "__main__":
    run()
