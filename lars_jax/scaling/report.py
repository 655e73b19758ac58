"""The console tables of the scaling CLI: Table 1's shape, the paper checks, ResNet-50 by device."""
from __future__ import annotations


def format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s"



def format_usd(x: float | None) -> str:
    return "-" if x is None else (f"${x / 1e6:.2f}M" if x >= 1e6 else f"${x:,.0f}")


def format_tables(result: dict) -> str:
    lines = []
    lines.append("Table 1 shape: AlexNet-BN, 100 epochs x 1.28M images, 64 images per KNL, ring all-reduce "
                 f"(KNL efficiency {result['knl_efficiency']:.3f})")
    lines.append(f"{'batch':>7} {'KNLs':>5} {'iterations':>11} {'t_comp':>9} {'t_comm':>9} {'t_iter':>9} "
                 f"{'comm total':>11} {'total':>10}")
    for r in result["table1"]:
        lines.append(f"{r['batch']:>7} {r['devices']:>5} {r['iterations']:>11,.0f} {r['t_comp'] * 1e3:>7.1f}ms "
                     f"{r['t_comm'] * 1e3:>7.1f}ms {r['t_iter'] * 1e3:>7.1f}ms {format_seconds(r['comm_total_s']):>11} "
                     f"{format_seconds(r['total_s']):>10}")
    lines.append("")
    lines.append("Paper figures vs the model (error = model / paper - 1)")
    for r in result["paper_checks"]["rows"]:
        rep, mod = r["reported"], r["model"]
        if rep is None or mod is None:
            lines.append(f"  {r['figure']}\n      {r['fitted']}")
            continue
        is_time = "min" in r["figure"] or " h" in r["figure"] or "days" in r["figure"]
        fmt = format_seconds if is_time else (lambda v: f"{v:.4g}")
        lines.append(f"  {r['figure']}\n      paper {fmt(rep)}  model {fmt(mod)}  error {r['error']:+.1%}  "
                     f"[{r['fitted']}]")
    lines.append("")
    lines.append("ResNet-50, 90 epochs, batch 32k: time, device-hours and cost by device (hierarchical all-reduce)")
    lines.append(f"{'device':>10} {'p':>5} {'t_comp':>9} {'t_comm':>9} {'total':>9} {'dev-hours':>10} "
                 f"{'hardware':>10} {'cloud':>10}  throughput")
    for r in result["devices_table"]:
        lines.append(f"{r['device']:>10} {r['devices']:>5} {r['t_comp'] * 1e3:>7.0f}ms {r['t_comm'] * 1e3:>7.1f}ms "
                     f"{format_seconds(r['total_s']):>9} {r['device_hours']:>10,.0f} "
                     f"{format_usd(r['hardware_cost']):>10} {format_usd(r['cloud_cost']):>10}  "
                     f"{r['throughput_source']}")
    return "\n".join(lines)
