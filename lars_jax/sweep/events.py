"""Reading a run's TensorBoard event files back: the per-layer LARS statistics the plots draw."""
from __future__ import annotations


def read_scalars(workdir: str, prefix: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of the TensorBoard scalars under `prefix` in a run's workdir."""
    import numpy as np
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(workdir, size_guidance={event_accumulator.TENSORS: 0,
                                                                     event_accumulator.SCALARS: 0})
    acc.Reload()
    out: dict[str, list[tuple[int, float]]] = {}
    tags = acc.Tags()
    for tag in tags.get("tensors", []):
        if not tag.startswith(prefix):
            continue
        values = [(e.step, np.asarray(_tensor_value(e.tensor_proto))) for e in acc.Tensors(tag)]
        if all(v.ndim == 0 and np.issubdtype(v.dtype, np.number) for _, v in values):  # not hparams/text
            out[tag] = [(step, float(v)) for step, v in values]
    for tag in tags.get("scalars", []):
        if tag.startswith(prefix):
            out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    return {k: sorted(v) for k, v in out.items()}


def _tensor_value(proto):
    from tensorboard.util import tensor_util
    return tensor_util.make_ndarray(proto)
