"""scaling.png: time to train vs devices (AlexNet-BN on KNL) and cost vs time (ResNet-50).

matplotlib is imported only when plot() runs (it is an optional extra).
"""
from __future__ import annotations

from lars_jax.scaling.paper import PAPER


def plot(result: dict, path: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: a notebook's own figures keep their backend

    fig = Figure(figsize=(13, 5.2))
    ax1, ax2 = fig.subplots(1, 2)
    for b, rows in result["sweep"].items():
        ax1.plot([r["devices"] for r in rows], [r["total_s"] / 3600 for r in rows], marker="o", ms=3,
                 label=f"B = {int(b):,}")
    ax1.scatter([512], [PAPER["alexnet_knl512_s"] / 3600], marker="*", s=140, color="k", zorder=5,
                label="paper: 24 min on 512 KNL at B = 32k (the fit)")
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xlabel("KNL chips")
    ax1.set_ylabel("hours to train")
    ax1.set_title(f"AlexNet-BN, 100 epochs on KNL, ring all-reduce (efficiency {result['knl_efficiency']:.3f});\n"
                  "flat tails = iterations x t_comm; efficiency held constant down to 1 image per chip")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)

    for name, rows in result["cost_curves"].items():
        ax2.plot([r["total_s"] / 3600 for r in rows], [r["hardware_cost"] for r in rows], marker="o", ms=3,
                 label=name)
        for r in rows[:: max(1, len(rows) // 3)]:
            ax2.annotate(str(r["devices"]), (r["total_s"] / 3600, r["hardware_cost"]), fontsize=6)
    ax2.scatter([1.0], [PAPER["dgx1_cost"]], marker="*", s=140, color="C1", zorder=5,
                label="paper: 32 DGX-1, $4.1M, 1 h (Goyal et al.)")
    ax2.scatter([1.0], [PAPER["knl_cost"]], marker="*", s=140, color="k", zorder=5,
                label="paper: 512 KNL, $1.2M, 1 h")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("hours to train (ResNet-50, 90 epochs, B = 32k)")
    ax2.set_ylabel("hardware cost, USD (devices x price)")
    ax2.set_title("Cost vs time (labels: device count)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
