#!/usr/bin/env python3
"""The table of an A/B run (loadtest/ab-run.sh): per-server-CPU-second means per shape.

Reads DIR/r<round>/<side>/<shape>/<server>-<scenario>.json (the generator's --json) and prints
markdown: the mean of each side over the rounds, every round's value, and NEW/OLD, NEW/Bun and
(with --floor) NEW/floor.
A run that failed or whose integrity check did not pass is reported, never averaged in.
"""
import json
import pathlib
import statistics
import sys


def load(path):
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, "no result"
    integrity = d.get("integrity")
    if isinstance(integrity, dict) and integrity.get("ok") is False:
        return None, "integrity failed"
    v = d.get("per_server_cpu_sec")
    if not isinstance(v, (int, float)):
        return None, "no CPU figure"
    return float(v), None


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ab-report.py RESULTS_DIR")
    root = pathlib.Path(sys.argv[1])
    rounds = sorted(p for p in root.glob("r*") if p.is_dir())
    values = {}  # (shape, side) -> [values]
    problems = []
    shapes = []
    for r in rounds:
        for side_dir in sorted(p for p in r.iterdir() if p.is_dir()):
            for shape_dir in sorted(p for p in side_dir.iterdir() if p.is_dir()):
                if shape_dir.name not in shapes:
                    shapes.append(shape_dir.name)
                files = list(shape_dir.glob("*.json"))
                if not files:
                    problems.append(f"{r.name} {side_dir.name} {shape_dir.name}: no result")
                    continue
                v, why = load(files[0])
                if v is None:
                    problems.append(f"{r.name} {side_dir.name} {shape_dir.name}: {why}")
                    continue
                values.setdefault((shape_dir.name, side_dir.name), []).append(v)

    def fmt(v):
        return f"{v / 1000:,.1f}k"

    sides = ["old", "new", "bun"]
    if any(side == "floor" for _, side in values):
        sides.append("floor")
    ratios = [("new", "old"), ("new", "bun")] + ([("new", "floor")] if "floor" in sides else [])
    head = [" shape (per server-CPU-s) "] + sides + [f"{a}/{b}" for a, b in ratios]
    head.append(f"rounds ({'; '.join(sides)})")
    print("|" + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for shape in shapes:
        means = {}
        cells = []
        for side in sides:
            vs = values.get((shape, side), [])
            means[side] = statistics.mean(vs) if vs else None
            cells.append(", ".join(fmt(v) for v in vs) or "-")
        def ratio(a, b):
            if means[a] is None or means[b] is None:
                return "-"
            return f"{means[a] / means[b]:.2f}"
        row = [shape] + [fmt(means[s]) if means[s] is not None else "-" for s in sides]
        row += [ratio(a, b) for a, b in ratios] + ["; ".join(cells)]
        print("| " + " | ".join(row) + " |")
    for p in problems:
        print(f"\n- {p}")


if __name__ == "__main__":
    main()
