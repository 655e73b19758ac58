"""The device catalogue: peak rates, networks, prices, each number with its source (data/devices.json)."""
from __future__ import annotations

import dataclasses
import json
import os

DEVICES_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "devices.json")


@dataclasses.dataclass(frozen=True)
class Device:
    """One compute device (a GPU, a CPU socket, a TPU chip, or a whole node where named so).

    per_node devices share one node; a ring hop inside the node runs at intra_bw, and the node's
    network (inter_bw bytes/s per direction, all NICs together) is shared by its devices.
    images_per_second: measured ResNet-50 training throughput per device {label: img/s}.
    """
    name: str
    peak_fp32: float | None  # flop/s
    peak_low: float | None  # flop/s of the fastest dense 16-bit path (tensor cores, MXU)
    per_node: int
    intra_bw: float | None  # bytes/s per direction, device to device inside a node
    inter_bw: float | None  # bytes/s per direction, per node
    latency: float  # seconds per message hop between nodes (alpha)
    intra_latency: float  # seconds per hop inside a node
    price: float | None  # USD per device (purchase)
    cloud_per_hour: float | None  # USD per device-hour
    images_per_second: dict = dataclasses.field(default_factory=dict)
    sources: dict = dataclasses.field(default_factory=dict)


def load_devices(path: str = DEVICES_JSON) -> dict[str, Device]:
    """{name: Device} in the file's order; a missing or unknown field raises, naming the device."""
    with open(path) as f:
        entries = json.load(f)["devices"]
    fields = {f.name for f in dataclasses.fields(Device)}
    devices = {}
    for entry in entries:
        if set(entry) != fields:
            raise ValueError(f"{path}: device {entry.get('name')!r}: missing {sorted(fields - set(entry))}, "
                             f"unknown {sorted(set(entry) - fields)}")
        devices[entry["name"]] = Device(**entry)
    return devices


DEVICES: dict[str, Device] = load_devices()
