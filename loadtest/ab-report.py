#!/usr/bin/env python3
"""The report of an A/B run (loadtest/ab-run.sh), as docs/ab-protocol.md defines it.

Usage: ab-report.py RESULTS_DIR [--min-cpu PCT]

Reads DIR/r<round>/<side>/<shape>/<server>-<scenario>.json (the generator's --json) and prints
markdown:
  1. per shape and side: the median per-server-CPU-second figure over the saturated rounds with
     its spread (min-max), how many rounds were saturated (server >= PCT, default 90, % of a
     CPU), the median server CPU share, and the median kernel events per op on the server's
     side (RES IPIs on its CPU, context switches, cycles where perf counts them), and the
     bytes on the wire per op the generator received (what the server sent: the
     permessage-deflate shapes compare these);
  1b. per shape and side: where the server's CPU went, µs per op (medians over the saturated
     rounds): its own code (utime) and the kernel's (stime, ksoftirqd), and for NEW against each
     peer the ratio NEW could reach if its own code took no time at all (peer's total over
     NEW's kernel time): when two servers make the same syscalls per op, their kernel time
     per op is about equal, and that ratio is the ceiling (PERF.md §1p);
  2. per shape: NEW/OLD, NEW/Bun (and NEW/floor) as the ratio of the medians, the spread of the
     per-round ratios (rounds where both sides were saturated), and for NEW/OLD how many rounds
     NEW won and the verdict: "NEW faster" only if NEW won every paired round (with 5 rounds a
     sign test puts that at p = 1/32 by chance), "NEW slower" if it lost every one, else "no
     difference shown". A ratio needs at least 3 saturated rounds on each side, else
     "unsaturated".
A run that failed, has no CPU figure, or whose integrity check did not pass is listed, never
used. Writes DIR/ratio-<shape>.svg: the per-round ratios across rounds, one colour per peer.
"""
import os
import pathlib
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_report import load_run, saturated  # noqa: E402
from svgplot import colour_of, line_plot  # noqa: E402

MIN_SATURATED = 3


def fmt(v, digits=1):
    if v is None:
        return "-"
    if abs(v) >= 1e3:
        return f"{v / 1e3:,.{digits}f}k"
    return f"{v:.{digits}f}"


def spread(vs, f=fmt):
    if not vs:
        return "-"
    return f"{f(statistics.median(vs))} ({f(min(vs))}-{f(max(vs))})"


def median_or_none(vs):
    vs = [v for v in vs if v is not None]
    return statistics.median(vs) if vs else None


def main():
    args = sys.argv[1:]
    min_cpu = 90.0
    if "--min-cpu" in args:
        i = args.index("--min-cpu")
        min_cpu = float(args[i + 1])
        del args[i : i + 2]
    if len(args) != 1:
        sys.exit("usage: ab-report.py RESULTS_DIR [--min-cpu PCT]")
    root = pathlib.Path(args[0])
    rounds = sorted((p for p in root.glob("r*") if p.is_dir() and p.name[1:].isdigit()),
                    key=lambda p: int(p.name[1:]))
    runs = {}  # (shape, side) -> {round: run}
    problems, shapes = [], []
    for r in rounds:
        rnd = int(r.name[1:])
        for side_dir in sorted(p for p in r.iterdir() if p.is_dir()):
            for shape_dir in sorted(p for p in side_dir.iterdir() if p.is_dir()):
                shape, side = shape_dir.name, side_dir.name
                if shape not in shapes:
                    shapes.append(shape)
                files = sorted(shape_dir.glob("*.json"))
                run = load_run(files[0]) if files else None
                where = f"round {rnd} {side} {shape}"
                if run is None:
                    problems.append(f"{where}: no result")
                elif not run["ok"]:
                    problems.append(f"{where}: integrity failed")
                elif run["per_cpu"] is None:
                    problems.append(f"{where}: no CPU figure")
                else:
                    if not saturated(run, min_cpu):
                        problems.append(f"{where}: unsaturated (server {fmt(run['srv_pct'], 0)}% of a CPU)")
                    runs.setdefault((shape, side), {})[rnd] = run

    sides = [s for s in ("old", "new", "bun", "floor", "flooru") if any(k[1] == s for k in runs)]
    meta = root / "meta.txt"
    if meta.exists():
        print("```\n" + meta.read_text().strip() + "\n```\n")
    print(f"Per side: medians over the saturated rounds (server >= {min_cpu:g}% of a CPU), spread min-max; "
          "kernel events on the server's side per op.\n")
    print("| shape | side | saturated rounds | per server-CPU-s | server CPU % | RES/op | cs/op | cycles/op "
          "| syscalls/op | B in/op |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    sat = {}
    for shape in shapes:
        for side in sides:
            by_round = runs.get((shape, side), {})
            if not by_round:
                continue
            good = {k: v for k, v in by_round.items() if saturated(v, min_cpu)}
            sat[(shape, side)] = good
            f3 = lambda v: fmt(v, 3)
            f0 = lambda v: fmt(v, 0)
            col = lambda key, f: spread([v[key] for v in good.values() if v[key] is not None], f)
            print(f"| {shape} | {side} | {len(good)}/{len(by_round)} | {col('per_cpu', fmt)} | "
                  f"{spread([v['srv_pct'] for v in by_round.values() if v['srv_pct'] is not None], f0)} | "
                  f"{col('res', f3)} | {col('cs', f3)} | {col('cycles', f0)} | {col('syscalls', f3)} | "
                  f"{spread([v['wire_in'] for v in by_round.values() if v.get('wire_in') is not None], f0)} |")

    peers = [s for s in ("old", "bun", "floor", "flooru") if s in sides]
    split = [(shape, side) for (shape, side), good in sat.items()
             if any(v.get("user_us") is not None for v in good.values())]
    if split:
        print("\nWhere the server's CPU went, µs per op (medians over the saturated rounds): its own "
              "code (user) and the kernel's (kernel: syscalls, the softirqs they run, ksoftirqd). "
              "\"new/peer at user 0\": the peer's total over NEW's kernel time, the ratio NEW could "
              "reach if its own code cost nothing.\n")
        print("| shape | side | user µs/op | kernel µs/op | total µs/op | new/side at user 0 |")
        print("|---|---|---|---|---|---|")
        f2 = lambda v: fmt(v, 2)
        for shape, side in split:
            good = sat[(shape, side)]
            user = median_or_none([v.get("user_us") for v in good.values()])
            kern = median_or_none([v.get("kernel_us") for v in good.values()])
            total = median_or_none([v["user_us"] + v["kernel_us"] for v in good.values()
                                    if v.get("user_us") is not None and v.get("kernel_us") is not None])
            new_kern = median_or_none([v.get("kernel_us") for v in sat.get((shape, "new"), {}).values()])
            ceiling = "-"
            if side != "new" and total is not None and new_kern:
                ceiling = f"{total / new_kern:.2f}"
            print(f"| {shape} | {side} | {f2(user)} | {f2(kern)} | {f2(total)} | {ceiling} |")

    print("\nRatios of the medians; per-round ratios (min-max) over rounds where both sides were "
          "saturated; NEW/OLD verdict by the sign of every paired round.\n")
    head = ["shape"] + [f"new/{p}" for p in peers] + ["new won (rounds)", "verdict"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for shape in shapes:
        new = sat.get((shape, "new"), {})
        row, plot = [shape], []
        won = verdict = "-"
        for p in peers:
            other = sat.get((shape, p), {})
            if not runs.get((shape, p)) or not runs.get((shape, "new")):
                row.append("-")
                continue
            if len(new) < MIN_SATURATED or len(other) < MIN_SATURATED:
                row.append(f"unsaturated ({len(new)}, {len(other)} saturated rounds)")
                continue
            m = statistics.median(v["per_cpu"] for v in new.values()) / statistics.median(
                v["per_cpu"] for v in other.values())
            paired = {k: new[k]["per_cpu"] / other[k]["per_cpu"] for k in new if k in other}
            rng = f" ({min(paired.values()):.2f}-{max(paired.values()):.2f})" if paired else ""
            row.append(f"{m:.2f}{rng}")
            plot.append({"label": f"new/{p}", "colour": colour_of(p), "dash": "",
                         "points": sorted(paired.items())})
            if p == "old" and paired:
                wins = sum(1 for v in paired.values() if v > 1)
                won = f"{wins}/{len(paired)}"
                if len(paired) >= 5 and wins == len(paired):
                    verdict = "NEW faster"
                elif len(paired) >= 5 and wins == 0:
                    verdict = "NEW slower"
                else:
                    verdict = "no difference shown"
        row += [won, verdict]
        print("| " + " | ".join(row) + " |")
        if plot:
            svg = root / f"ratio-{shape}.svg"
            line_plot(str(svg), f"{shape}: NEW / peer per server-CPU-second, by round", "round",
                      "ratio", plot, xticks={k: str(k) for s in plot for k, _ in s["points"]},
                      hlines=[(1.0, "1.0")])
    plots = sorted(root.glob("ratio-*.svg"))
    if plots:
        print("\nRatio plots: " + ", ".join(str(p) for p in plots))
    for p in problems:
        print(f"\n- {p}")


if __name__ == "__main__":
    main()
