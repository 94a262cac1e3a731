#!/usr/bin/env python3
"""Turns a loadtest/perf-run.sh results directory into PERF.md tables and SVG latency plots.

Usage: loadtest/perf-report.py RESULTS_DIR   (prints markdown; writes RESULTS_DIR/*.svg and
copies the plots to loadtest/plots/ so PERF.md can link them)
"""
import json
import os
import shutil
import sys

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
    rows = []
    for variant in sorted(os.listdir(out)):
        vdir = os.path.join(out, variant)
        if not os.path.isdir(vdir) or variant.startswith("latency"):
            continue
        results = {}
        for f in os.listdir(vdir):
            if f.endswith(".json"):
                server = f.split("-", 1)[0]
                results[server] = load(os.path.join(vdir, f))
        rows.append((variant, results))
    print("| run | unit | " + " | ".join(SERVERS) + " | partyring/bun | partyring/partykit | partyring/floor |")
    print("|---|---|" + "---|" * (len(SERVERS) + 3))
    for variant, results in rows:
        unit = next((r.get("unit") for r in results.values() if r), "")
        vals = {s: (results.get(s) or {}).get("per_server_cpu_sec") for s in SERVERS}
        cells = [fmt(vals[s]) for s in SERVERS]
        ratios = []
        for peer in ("bun", "partykit", "floor"):
            a, b = vals["partyring"], vals[peer]
            ratios.append(f"{a / b:.2f}x" if a and b else "-")
        print(f"| {variant} | {unit}/server-CPU-s | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    print()
    print("Raw rates (per wall-clock second), server CPU%, generator CPU%, integrity:")
    print()
    print("| run | server | rate/s | server CPU % | generator CPU % | p50 µs | p99 µs | integrity |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, results in rows:
        for s in SERVERS:
            r = results.get(s)
            if not r or not r.get("steps"):
                continue
            st = r["steps"][-1]
            lat = st.get("latency_us") or {}
            integ = r.get("integrity", {})
            ok = "OK" if integ.get("ok") else "FAILED"
            print(f"| {variant} | {s} | {fmt(r.get('rate'))} | {fmt(st.get('server_cpu_pct'))} | "
                  f"{fmt(st.get('gen_cpu_pct'))} | {fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} | "
                  f"{ok} ({integ.get('checked', 0)} checked) |")


def svg_plot(title, series, path):
    """series: {name: [(x, y), ...]}; log-scale y (µs), linear x."""
    import math
    w, h, ml, mr, mt, mb = 640, 400, 70, 150, 40, 50
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts if y > 0]
    if not xs or not ys:
        return False
    x0, x1 = 0, max(xs) * 1.05
    y0, y1 = math.log10(max(min(ys) / 2, 1)), math.log10(max(ys) * 2)
    sx = lambda x: ml + (x - x0) / (x1 - x0) * (w - ml - mr)
    sy = lambda y: h - mb - (math.log10(max(y, 1)) - y0) / (y1 - y0) * (h - mt - mb)
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{ml}" y1="{h - mb}" x2="{w - mr}" y2="{h - mb}" stroke="black"/>',
           f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{h - mb}" stroke="black"/>',
           f'<text x="{(ml + w - mr) / 2}" y="{h - 12}" text-anchor="middle">publishes/s offered</text>',
           f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">delivery latency (µs, log)</text>']
    for e in range(int(math.floor(y0)), int(math.ceil(y1)) + 1):
        if y0 <= e <= y1:
            y = sy(10 ** e)
            out.append(f'<line x1="{ml}" y1="{y}" x2="{w - mr}" y2="{y}" stroke="#ddd"/>')
            out.append(f'<text x="{ml - 5}" y="{y + 4}" text-anchor="end">{10 ** e:g}</text>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{sx(x)}" y="{h - mb + 15}" text-anchor="middle">{x:g}</text>')
    for i, (name, pts) in enumerate(series.items()):
        c = colors[i % len(colors)]
        pts = sorted(pts)
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="4 3"' if "p50" in name else (' stroke-dasharray="1 2"' if "p999" in name else "")
        out.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{c}"/>')
        ly = mt + 15 + i * 18
        out.append(f'<line x1="{w - mr + 10}" y1="{ly - 4}" x2="{w - mr + 30}" y2="{ly - 4}" stroke="{c}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{w - mr + 35}" y="{ly}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))
    return True


def latency(out):
    for variant in sorted(os.listdir(out)):
        vdir = os.path.join(out, variant)
        # Only the result directories: the plots written next to them share the prefix.
        if not variant.startswith("latency") or not os.path.isdir(vdir):
            continue
        series = {}
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
                        series.setdefault(f"{server} {q}", []).append((offered, lat[q]))
        svg = os.path.join(out, f"{variant}.svg")
        if svg_plot(f"fan-out delivery latency, {variant}", series, svg):
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
