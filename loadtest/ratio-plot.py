#!/usr/bin/env python3
"""partyring/peer per server-CPU-second across runs: one plot per scenario.

Usage: ratio-plot.py [--out DIR] [--min-cpu PCT] RUN_DIR [RUN_DIR ...]

Each RUN_DIR is a loadtest/compare output (<server>-<scenario>.json files) or a perf-run.sh
output (one compare output per variant). Runs are placed on the x axis in the order given. A
point is drawn only where both servers used >= PCT (default 90) % of a CPU; the table marks the
others "unsaturated". Writes DIR/ratio-<scenario>.svg (default DIR: loadtest/plots), one colour
per peer, and prints the ratios as markdown. For A/B rounds, ab-report.py draws the same plot
per round.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_report import load_run, saturated  # noqa: E402
from svgplot import colour_of, line_plot  # noqa: E402

SERVERS = ["partyring", "bun", "partykit", "floor", "floor-uring"]


def results_of(run_dir):
    """{scenario: {server: run}} of one compare or perf-run directory."""
    found = {}

    def scan(d, prefix):
        for f in sorted(os.listdir(d)):
            p = os.path.join(d, f)
            if os.path.isdir(p) and prefix is None:
                if not f.startswith("latency"):  # open-loop sweeps: a rate per step, no ratio
                    scan(p, f)
            elif f.endswith(".json"):
                server, _, scenario = f[:-5].partition("-")
                if server in SERVERS:
                    found.setdefault(prefix or scenario, {})[server] = load_run(p)

    scan(run_dir, None)
    return found


def main():
    args = sys.argv[1:]
    out, min_cpu = "loadtest/plots", 90.0
    while args and args[0].startswith("--"):
        if args[0] == "--out":
            out = args[1]
        elif args[0] == "--min-cpu":
            min_cpu = float(args[1])
        else:
            sys.exit(f"unknown option {args[0]}")
        args = args[2:]
    if not args:
        sys.exit("usage: ratio-plot.py [--out DIR] [--min-cpu PCT] RUN_DIR [RUN_DIR ...]")
    runs = [(os.path.basename(os.path.normpath(d)), results_of(d)) for d in args]
    scenarios = sorted({sc for _, r in runs for sc in r})
    os.makedirs(out, exist_ok=True)
    for sc in scenarios:
        print(f"\n{sc}: partyring/peer per server-CPU-second\n")
        peers = [p for p in SERVERS[1:] if any(p in r.get(sc, {}) for _, r in runs)]
        print("| run | " + " | ".join(f"partyring/{p}" for p in peers) + " |")
        print("|---|" + "---|" * len(peers))
        series = {p: [] for p in peers}
        for i, (name, r) in enumerate(runs, 1):
            cells = []
            for p in peers:
                a, b = r.get(sc, {}).get("partyring"), r.get(sc, {}).get(p)
                if not a or not b or not a["per_cpu"] or not b["per_cpu"] or not (a["ok"] and b["ok"]):
                    cells.append("-")
                elif not (saturated(a, min_cpu) and saturated(b, min_cpu)):
                    cells.append("unsaturated")
                else:
                    v = a["per_cpu"] / b["per_cpu"]
                    series[p].append((i, v))
                    cells.append(f"{v:.2f}x")
            print(f"| {i}: {name} | " + " | ".join(cells) + " |")
        lines = [{"label": f"partyring/{p}", "colour": colour_of(p), "dash": "", "points": pts}
                 for p, pts in series.items() if pts]
        svg = os.path.join(out, f"ratio-{sc}.svg")
        ticks = {i: str(i) for i in range(1, len(runs) + 1)}
        if line_plot(svg, f"{sc}: partyring / peer per server-CPU-second", "run", "ratio", lines,
                     xticks=ticks, hlines=[(1.0, "1.0")]):
            print(f"\nPlot: {svg}")


if __name__ == "__main__":
    main()
