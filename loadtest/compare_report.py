#!/usr/bin/env python3
"""The tables of a loadtest/compare run (also used by ab-report.py for its per-run figures).

Usage: compare_report.py OUT_DIR SERVERS SCENARIOS [MIN_CPU]   (lists comma-separated)

Reads OUT_DIR/<server>-<scenario>.json (partyring-load --json) and prints:
  1. every run: rate per wall second and per server-CPU-second, the server's and the
     generator's CPU share, the server-side kernel events per counted unit (RES IPIs on
     the server's CPU, context switches, cycles), and the bytes on the wire per counted unit
     that the generator received ("B in/op": what the server sent) and sent ("B out/op");
     for idle, the server's RSS growth per connection ("RSS B/conn");
  2. partyring/peer per server-CPU-second, or "unsaturated" when either server used less than
     MIN_CPU (default 90) % of a CPU over its window.
"""
import json
import os
import sys

CANNOT = {("floor", "fanout-http"), ("floor-uring", "fanout-http")}


def load_run(path):
    """The figures of one run, or None when the result is missing or unreadable."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict):
        return None

    def num(key, src=d):
        v = src.get(key) if isinstance(src, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            return float(v)
        return None

    steps = d.get("steps") or [{}]
    last = steps[-1] if isinstance(steps[-1], dict) else {}
    integrity = d.get("integrity") if isinstance(d.get("integrity"), dict) else {}
    return {
        "unit": d.get("unit") if isinstance(d.get("unit"), str) else "",
        "per_cpu": num("per_server_cpu_sec"),
        "rate": num("rate"),
        "srv_pct": num("server_cpu_pct"),
        # Of srv_pct, ksoftirqd on the server's CPU (partyring-load counts it as the server's).
        "softirqd_pct": num("softirqd_cpu_pct"),
        "gen_pct": num("gen_cpu_pct", last),
        "res": num("res_per_op"),
        "cs": num("ctx_switches_per_op"),
        "cycles": num("cycles_per_op"),
        "syscalls": num("syscalls_per_op"),
        # The server's CPU per op, µs: its own code (utime) and the kernel's (the rest).
        "user_us": num("user_us_per_op"),
        "kernel_us": num("kernel_us_per_op"),
        "wire_in": num("wire_in_per_op"),
        "wire_out": num("wire_out_per_op"),
        "rss_per_conn": num("server_rss_bytes_per_conn", d.get("memory")),
        "res_cpu": (last.get("kernel") or {}).get("res_cpu") if isinstance(last, dict) else None,
        "ok": integrity.get("ok") is not False,
        # partyring-load --inflate-sample: one receiver in N inflated and checked its messages.
        "inflate_sample": int(num("inflate_sample") or 1),
    }


def saturated(run, min_cpu):
    return run is not None and run["srv_pct"] is not None and run["srv_pct"] >= min_cpu


def fmt_bytes(v):
    return "-" if v is None else f"{v:.0f}"


def fmt(v, digits=2):
    if v is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.{digits}f}{suffix}"
    return f"{v:.{digits}f}" if digits else f"{v:.0f}"


def table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(
        str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: compare_report.py OUT_DIR SERVERS SCENARIOS [MIN_CPU]")
    out, servers, scenarios = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
    min_cpu = float(sys.argv[4]) if len(sys.argv) == 5 else 90.0
    runs = {}
    for sc in scenarios:
        for s in servers:
            if (s, sc) not in CANNOT:
                runs[(s, sc)] = load_run(os.path.join(out, f"{s}-{sc}.json"))

    print()
    print(f"results: {out}")
    print("Every run (fresh server): rate per wall second and per server-CPU-second, CPU shares, and")
    print("the server's kernel events per counted unit (RES = rescheduling IPIs on the server's CPU,")
    print("cs = context switches of its threads, cycles and syscalls from perf stat where it can count them).")
    rows = []
    for sc in scenarios:
        for s in servers:
            r = runs.get((s, sc))
            if r is None:
                continue
            rows.append([sc, s, r["unit"] or "ops", fmt(r["rate"]), fmt(r["per_cpu"]),
                         fmt(r["srv_pct"], 0), fmt(r["gen_pct"], 0), fmt(r["res"], 3),
                         fmt(r["cs"], 3), fmt(r["cycles"], 0), fmt(r["syscalls"], 3),
                         fmt_bytes(r["wire_in"]),
                         fmt_bytes(r["wire_out"]), fmt_bytes(r["rss_per_conn"]),
                         ("ok" if r["ok"] else "FAILED")
                         + (f" 1/{r['inflate_sample']} inflated" if r["inflate_sample"] > 1 else "")
                         + ("" if saturated(r, min_cpu) else " unsaturated")])
    print(table(["scenario", "server", "unit", "rate/s", "per cpu-s", "srv%", "gen%", "RES/op",
                 "cs/op", "cycles/op", "syscalls/op", "B in/op", "B out/op", "RSS B/conn", "integrity"], rows))

    if "partyring" in servers:
        peers = [s for s in servers if s != "partyring"]
        print()
        print(f"partyring/peer per server-CPU-second (> 1: partyring does more per CPU); only when both")
        print(f"servers used >= {min_cpu:g}% of a CPU, else 'unsaturated'; '-' not run or no result")
        rows = []
        for sc in scenarios:
            base = runs.get(("partyring", sc))
            row = [sc, (base["unit"] if base and base["unit"] else "ops") + "/cpu-s"]
            for p in peers:
                r = runs.get((p, sc))
                if base is None or r is None or base["per_cpu"] is None or r["per_cpu"] is None:
                    row.append("-")
                elif not (base["ok"] and r["ok"]):
                    row.append("integrity failed")
                elif not (saturated(base, min_cpu) and saturated(r, min_cpu)):
                    low = [f"{n} {fmt(x['srv_pct'], 0)}%" for n, x in (("partyring", base), (p, r))
                           if not saturated(x, min_cpu)]
                    row.append("unsaturated (" + ", ".join(low) + ")")
                else:
                    row.append(f"{base['per_cpu'] / r['per_cpu']:.2f}x")
            rows.append(row)
        print(table(["scenario", "unit"] + [f"partyring/{p}" for p in peers], rows))


if __name__ == "__main__":
    main()
