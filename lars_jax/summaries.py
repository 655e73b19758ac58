"""TensorBoard event files written without TensorFlow (clu's metric writers import it).

Records in TFRecord framing (tensorboard's RecordWriter), scalars as tensorboard's scalar-plugin
summaries and hyperparameters as its hparams-plugin summary: what TensorBoard and tensorboard's
EventAccumulator (lars_jax.sweep.events) read. One file per invocation. Each call appends its
records in one write, so the scalars of a log window are on disk at once; a write that fails (a
full disk) cuts the file back to its last whole record and raises OutputError, one line.
"""
from __future__ import annotations

import io
import itertools
import os
import socket
import time

from lars_jax.errors import OutputError
from lars_jax.workdir import free_space

_files = itertools.count()


class EventWriter:
    """Appends summaries to a new event file in `logdir` (the interface of clu's writers); with
    logdir None (processes other than 0) it writes nothing."""

    def __init__(self, logdir: str | None):
        from tensorboard.compat.proto import event_pb2
        self._event = event_pb2.Event
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_files)}"
        self.path = None if logdir is None else os.path.join(logdir, name)
        self._size = 0  # bytes of whole records on disk
        self._append([self._event(wall_time=time.time(), file_version="brain.Event:2")])

    def _append(self, events) -> None:
        if self.path is None:
            return
        from tensorboard.summary.writer.record_writer import RecordWriter
        buffer = io.BytesIO()
        for event in events:
            RecordWriter(buffer).write(event.SerializeToString())
        data = buffer.getvalue()
        fd = None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            self._size += len(data)
        except OSError as e:
            if fd is not None:
                os.ftruncate(fd, self._size)  # never a torn record at the end
            raise OutputError(f"writing TensorBoard events to {self.path} failed ({e.strerror or e}; "
                              f"{free_space(os.path.dirname(self.path))}); the file holds every whole record "
                              f"before. Free space there (or use another --workdir) and rerun the same command") from e
        finally:
            if fd is not None:
                os.close(fd)

    def write_scalars(self, step: int, scalars: dict) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.scalar import summary_v2
        summary = summary_pb2.Summary()
        for tag, value in scalars.items():
            summary.value.extend(summary_v2.scalar_pb(tag, value).value)
        self._append([self._event(wall_time=time.time(), step=int(step), summary=summary)])

    def write_hparams(self, hparams: dict) -> None:
        from tensorboard.plugins.hparams import summary_v2
        self._append([self._event(wall_time=time.time(), step=0, summary=summary_v2.hparams_pb(hparams))])

    def flush(self) -> None:
        """Nothing is buffered: each call has written its records."""

    def close(self) -> None:
        pass

