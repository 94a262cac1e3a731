#!/usr/bin/env python3
"""Turns a loadtest/perf-run.sh results directory into PERF.md tables and SVG latency plots.

Usage: loadtest/perf-report.py RESULTS_DIR   (prints markdown; writes RESULTS_DIR/*.svg and
copies the plots to loadtest/plots/ so PERF.md can link them)
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_report import load_run, saturated  # noqa: E402
from svgplot import PERCENTILE_DASHES, colour_of, line_plot  # noqa: E402

MIN_CPU = 90.0

SERVERS = ["partyring", "bun", "partykit", "floor"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt(v, digits=0):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.{digits}f}"


def main_table(out):
    """One row per variant: per-server-CPU-second figures and partyring/peer, the ratio only
    when both servers used >= MIN_CPU % of a CPU (else "unsaturated"); then every run with its
    CPU shares and kernel events per op."""
    rows = []
    for variant in sorted(os.listdir(out)):
        vdir = os.path.join(out, variant)
        if not os.path.isdir(vdir) or variant.startswith("latency"):
            continue
        results, raw = {}, {}
        for f in os.listdir(vdir):
            if f.endswith(".json"):
                server = f.split("-", 1)[0]
                results[server] = load_run(os.path.join(vdir, f))
                raw[server] = load(os.path.join(vdir, f))
        rows.append((variant, results, raw))
    peers = [s for s in SERVERS if s != "partyring"]
    print("| run | unit | " + " | ".join(SERVERS) + " | " + " | ".join(f"partyring/{p}" for p in peers) + " |")
    print("|---|---|" + "---|" * (len(SERVERS) + len(peers)))
    for variant, results, _ in rows:
        unit = next((r["unit"] for r in results.values() if r and r["unit"]), "")
        cells = [fmt((results.get(s) or {}).get("per_cpu")) for s in SERVERS]
        ratios = []
        for peer in peers:
            a, b = results.get("partyring"), results.get(peer)
            if not a or not b or not a["per_cpu"] or not b["per_cpu"]:
                ratios.append("-")
            elif not (saturated(a, MIN_CPU) and saturated(b, MIN_CPU)):
                ratios.append("unsaturated")
            else:
                ratios.append(f"{a['per_cpu'] / b['per_cpu']:.2f}x")
        print(f"| {variant} | {unit}/server-CPU-s | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print()
    print(f"Every run: rate per wall second, CPU shares (a ratio needs >= {MIN_CPU:g}% server CPU on both "
          "sides), the server's kernel events per op (RES = rescheduling IPIs on its CPU, cs = context "
          "switches, cycles from perf where available), latency and integrity:")
    print()
    print("| run | server | rate/s | server CPU % | generator CPU % | RES/op | cs/op | cycles/op | p50 µs | p99 µs | integrity |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for variant, results, raw in rows:
        for s in SERVERS:
            r, d = results.get(s), raw.get(s)
            if not r or not d or not d.get("steps"):
                continue
            lat = d["steps"][-1].get("latency_us") or {}
            integ = d.get("integrity", {})
            ok = "OK" if integ.get("ok") else "FAILED"
            print(f"| {variant} | {s} | {fmt(r['rate'])} | {fmt(r['srv_pct'])} | {fmt(r['gen_pct'])} | "
                  f"{fmt3(r['res'])} | {fmt3(r['cs'])} | {fmt(r['cycles'])} | {fmt(lat.get('p50'))} | "
                  f"{fmt(lat.get('p99'))} | {ok} ({integ.get('checked', 0)} checked) |")


def fmt3(v):
    return "-" if v is None else f"{v:.3f}"


def latency(out):
    for variant in sorted(os.listdir(out)):
        vdir = os.path.join(out, variant)
        # Only the result directories: the plots written next to them share the prefix.
        if not variant.startswith("latency") or not os.path.isdir(vdir):
            continue
        series = {}  # (server, percentile) -> points
        print(f"\nOpen-loop latency, {variant} (delivery latency from the timestamp in each payload):\n")
        print("| server | publishes/s offered | delivered/s | server CPU % | p50 µs | p99 µs | p999 µs | max µs |")
        print("|---|---|---|---|---|---|---|---|")
        for f in sorted(os.listdir(vdir)):
            if not f.endswith(".json"):
                continue
            server = f.split("-", 1)[0]
            r = load(os.path.join(vdir, f))
            if not r:
                continue
            for st in r.get("steps", []):
                lat = st.get("latency_us") or {}
                rate = st.get("ops_per_sec") or 0
                offered = float(st["label"].split()[-1]) if st.get("label", "").split()[-1].replace(".", "").isdigit() else rate
                print(f"| {server} | {offered:g} | {fmt(st.get('delivered_per_sec'))} | {fmt(st.get('server_cpu_pct'))} | "
                      f"{fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} | {fmt(lat.get('p999'))} | {fmt(lat.get('max'))} |")
                for q in ("p50", "p99", "p999"):
                    if lat.get(q):
                        series.setdefault((server, q), []).append((offered, lat[q]))
        svg = os.path.join(out, f"{variant}.svg")
        # Colour = server, line style = percentile.
        lines = [{"label": f"{server} {q}", "colour": colour_of(server), "dash": PERCENTILE_DASHES[q],
                  "points": pts}
                 for (server, q), pts in sorted(series.items(), key=lambda kv: (kv[0][0], kv[0][1]))]
        if line_plot(svg, f"fan-out delivery latency, {variant}", "publishes/s offered",
                     "delivery latency (µs, log)", lines, log_y=True):
            os.makedirs("loadtest/plots", exist_ok=True)
            shutil.copy(svg, os.path.join("loadtest/plots", f"{variant}.svg"))
            print(f"\nPlot: [loadtest/plots/{variant}.svg](loadtest/plots/{variant}.svg)")


if __name__ == "__main__":
    out = sys.argv[1]
    meta = os.path.join(out, "meta.txt")
    if os.path.exists(meta):
        print("```\n" + open(meta).read().strip() + "\n```\n")
    main_table(out)
    latency(out)
