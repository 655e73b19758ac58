"""The sweep's three figures (matplotlib, imported only when one is drawn): accuracy_vs_batch.png
(test accuracy per optimizer and batch), trust_ratios.png (per-layer trust ratios at the smallest and
largest batch) and noise_scale.png (B_simple over training at the smallest batch that measured it)."""
from __future__ import annotations

from lars_jax import optim
from lars_jax.sweep.cells import optimizer_config
from lars_jax.sweep.events import read_scalars
from lars_jax.sweep.summary import selected_cell

ACCURACY_PNG = "accuracy_vs_batch.png"
TRUST_PNG = "trust_ratios.png"
NOISE_PNG = "noise_scale.png"


def plot_accuracy(sweep, summary, records, path: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: a notebook's own figures keep their backend

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    markers = "osD^v<>"
    for i, opt in enumerate(sweep.optimizer_order):
        rows = [r for r in summary if r["optimizer"] == opt]
        if not rows:
            continue
        spec = sweep.optimizers[opt]
        searched = len(spec.lr_multipliers) > 1
        pts = [(r["batch_size"], 100 * r["mean_accuracy"]) for r in rows if r["mean_accuracy"] is not None]
        label = spec.label + (f" (chosen of {len(spec.lr_multipliers)} LRs)" if searched else "")
        xs, ys = zip(*pts) if pts else ((), ())
        line, = ax.plot(xs, ys, marker=markers[i % len(markers)], label=label)
        color = line.get_color()
        for r in rows:
            accs = [100 * a for a in r["accuracies"] if a is not None]
            ax.scatter([r["batch_size"]] * len(accs), accs, s=12, color=color, alpha=0.5)
            if r["diverged"] and not accs:
                ax.scatter([r["batch_size"]], [10.0], marker="x", color=color)  # chance level
        rule = [(r["batch_size"], 100 * r["rule"]["mean_accuracy"]) for r in rows
                if searched and r["rule"] and r["rule"]["mean_accuracy"] is not None]
        if rule:
            ax.plot(*zip(*rule), ls="--", marker=markers[i % len(markers)], mfc="none", color=color, alpha=0.7,
                    label=f"{spec.label} (rule's LR)")
    ax.set_xscale("log", base=2)
    batches = sorted({r["batch_size"] for r in summary})
    ax.set_xticks(batches, [f"{b:,}" for b in batches])
    ax.set_xlabel("global batch size (log scale)")
    ax.set_ylabel("top-1 test accuracy (%), LR chosen on validation")
    b = sweep.base
    budget = f"{b.schedule.num_epochs:g} epochs" if b.schedule.total_steps is None else f"{b.schedule.total_steps} steps"
    ax.set_title(f"{b.data.name}, {b.model.name}, {budget} per run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)



def trust_ratio_runs(sweep, summary, records) -> list[dict]:
    """The first-seed records of the selected `trust_ratio_optimizer` cells at the smallest and
    largest batch size."""
    opt = sweep.trust_ratio_optimizer
    rows = [r for r in summary if r["optimizer"] == opt]
    if not rows:
        return []
    picks = {min(r["batch_size"] for r in rows), max(r["batch_size"] for r in rows)}
    cells = (selected_cell(sweep, records, r) for r in sorted(rows, key=lambda r: r["batch_size"])
             if r["batch_size"] in picks)
    return [c for c in cells if c is not None]


def trust_ratio_formula(config) -> str:
    """The trust ratio the config's optimizer computes (lars_jax.optim), for the plot's y-label."""
    if config.optimizer.name == "lamb":
        return f"{optim.LAMB_TRUST_RATIO_FORMULA}  (LAMB, r = Adam direction)"
    lars = config.optimizer.lars  # the trust ratio lars_jax.train logs, whatever the optimizer
    formula = optim.TRUST_RATIO_FORMULAS[lars.denominator].format(eps=" + eps" if lars.eps else "")
    return f"{formula}  ({lars.denominator} denominator)"


def plot_trust_ratios(sweep, summary, records, path: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: a notebook's own figures keep their backend

    runs = trust_ratio_runs(sweep, summary, records)
    if not runs:
        return
    fig = Figure(figsize=(6 * len(runs), 4.2))
    axes = fig.subplots(1, len(runs), squeeze=False)
    for ax, rec in zip(axes[0], runs):
        series = read_scalars(rec["workdir"], "layers/trust_ratio/")
        spe = rec["steps_per_epoch"] or 1
        for tag, pts in series.items():
            values = [v for _, v in pts]
            if all(v == 1.0 for v in values):  # excluded tensors (biases, BatchNorm): ratio 1 by rule
                continue
            ax.plot([s / spe for s, _ in pts], values, marker="." if len(pts) < 40 else None,
                    label=tag[len("layers/trust_ratio/"):])
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("trust ratio")
        ax.set_title(f"{sweep.optimizers[rec['optimizer']].label}, batch {rec['batch_size']:,} "
                     f"(peak LR {rec['peak_learning_rate']:.3g})")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("trust ratio = " + trust_ratio_formula(optimizer_config(sweep, runs[0]["optimizer"])), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_noise_scale(sweep, summary, records, path: str) -> None:
    """B_simple (EMA, as logged) over training of each optimizer's run at the smallest batch
    (first seed, chosen LR) that measured it."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's own figures keep their backend

    runs = []
    for opt in sweep.optimizer_order:
        rows = sorted((r for r in summary if r["optimizer"] == opt), key=lambda r: r["batch_size"])
        rec = next((c for c in (selected_cell(sweep, records, row) for row in rows)
                    if c is not None and c.get("b_simple_curve")), None)
        if rec is not None:
            runs.append(rec)
    if not runs:
        return
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for rec in runs:
        spe = rec["steps_per_epoch"] or 1
        pts = [(s / spe, v) for s, v in rec["b_simple_curve"] if v == v]  # drop nan (not yet measurable)
        if pts:
            ax.plot(*zip(*pts), label=f"{sweep.optimizers[rec['optimizer']].label}, batch {rec['batch_size']:,}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("B_simple = tr(Sigma) / |G|^2  (examples)")
    ax.set_title(f"gradient noise scale, {sweep.base.model.name} on {sweep.base.data.name}")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
