#!/usr/bin/env python3
"""Tests of the report scripts' rules: ratios refused below the CPU threshold, medians over
saturated rounds only, the NEW/OLD verdict by every paired round, one colour per server and one
line style per percentile. Run: python3 loadtest/test_reports.py
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare_report import load_run, saturated  # noqa: E402
from svgplot import PERCENTILE_DASHES, colour_of, line_plot  # noqa: E402


def result(per_cpu, srv_pct, ok=True, res=0.5, wire_in=None, user_us=None):
    # user_us: the server's own µs per op; the kernel has the rest of 1e6 / per_cpu.
    return {"per_server_cpu_sec": per_cpu, "rate": per_cpu * srv_pct / 100, "unit": "operations",
            "server_cpu_pct": srv_pct, "res_per_op": res, "ctx_switches_per_op": 0.01,
            "cycles_per_op": None, "integrity": {"ok": ok}, "wire_in_per_op": wire_in,
            "wire_out_per_op": None, "user_us_per_op": user_us,
            "kernel_us_per_op": None if user_us is None else 1e6 / per_cpu - user_us,
            "steps": [{"gen_cpu_pct": 50, "kernel": {"res_cpu": 0}}]}


def write(path, d):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(d, f)


class CompareReport(unittest.TestCase):
    def run_report(self, runs, min_cpu="90"):
        with tempfile.TemporaryDirectory() as d:
            for (server, scenario), r in runs.items():
                write(os.path.join(d, f"{server}-{scenario}.json"), r)
            out = subprocess.run([sys.executable, os.path.join(HERE, "compare_report.py"), d,
                                  "partyring,bun", "wrk-get-c20", min_cpu],
                                 capture_output=True, text=True, check=True).stdout
        return out.splitlines()[-1]

    def test_saturated_runs_give_a_ratio(self):
        row = self.run_report({("partyring", "wrk-get-c20"): result(200e3, 98),
                               ("bun", "wrk-get-c20"): result(100e3, 95)})
        self.assertTrue(row.endswith("2.00x"), row)

    def test_a_ratio_is_refused_below_the_threshold(self):
        row = self.run_report({("partyring", "wrk-get-c20"): result(200e3, 98),
                               ("bun", "wrk-get-c20"): result(100e3, 85)})
        self.assertIn("unsaturated (bun 85%)", row)
        self.assertNotIn("x", row.split()[-1])

    def test_failed_integrity_gives_no_ratio(self):
        row = self.run_report({("partyring", "wrk-get-c20"): result(200e3, 98, ok=False),
                               ("bun", "wrk-get-c20"): result(100e3, 98)})
        self.assertIn("integrity failed", row)

    def test_load_run_reads_the_counters(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "r.json")
            write(p, result(1000, 91, res=0.44))
            r = load_run(p)
        self.assertEqual((r["res"], r["srv_pct"], r["gen_pct"]), (0.44, 91, 50))
        self.assertEqual((r["wire_in"], r["wire_out"], r["rss_per_conn"]), (None, None, None))
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "r.json")
            write(p, dict(result(1000, 91, wire_in=123.5),
                          memory={"server_rss_bytes_per_conn": 2048.0}))
            r = load_run(p)
            self.assertEqual((r["wire_in"], r["rss_per_conn"]), (123.5, 2048.0))
        self.assertTrue(saturated(r, 90))
        self.assertFalse(saturated(r, 95))
        self.assertEqual(r["inflate_sample"], 1)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "r.json")
            write(p, dict(result(1000, 91), inflate_sample=8))
            self.assertEqual(load_run(p)["inflate_sample"], 8)


class AbReport(unittest.TestCase):
    def report(self, rounds, wire_in=None, user_us=None):
        """rounds: list of {side: (per_cpu, srv_pct)} for one shape."""
        with tempfile.TemporaryDirectory() as d:
            for i, sides in enumerate(rounds, 1):
                for side, (v, pct) in sides.items():
                    server = "bun" if side == "bun" else "partyring"
                    write(os.path.join(d, f"r{i}", side, "wrk-get-c20", f"{server}-wrk-get-c20.json"),
                          result(v, pct, wire_in=wire_in and wire_in[side] + i,
                                 user_us=user_us and user_us[side]))
            return subprocess.run([sys.executable, os.path.join(HERE, "ab-report.py"), d],
                                  capture_output=True, text=True, check=True).stdout

    def test_new_faster_only_when_it_wins_every_round(self):
        out = self.report([{"old": (100e3, 95), "new": (110e3 + i, 95)} for i in range(5)])
        self.assertIn("| 5/5 | NEW faster |", out)
        out = self.report([{"old": (100e3, 95), "new": (110e3 if i else 99e3, 95)} for i in range(5)])
        self.assertIn("| 4/5 | no difference shown |", out)

    def test_new_slower_when_it_loses_every_round(self):
        out = self.report([{"old": (100e3, 95), "new": (90e3, 95)} for _ in range(5)])
        self.assertIn("| 0/5 | NEW slower |", out)

    def test_unsaturated_rounds_are_left_out_and_listed(self):
        rounds = [{"old": (100e3, 95), "new": (110e3, 95)} for _ in range(5)]
        rounds[0]["new"] = (500e3, 50)  # an idle server's figure must not enter the median
        out = self.report(rounds)
        self.assertIn("| wrk-get-c20 | new | 4/5 | 110.0k (110.0k-110.0k)", out)
        self.assertIn("round 1 new wrk-get-c20: unsaturated (server 50% of a CPU)", out)
        self.assertIn("no difference shown", out)  # 4 paired rounds: too few for a verdict

    def test_bytes_on_the_wire_are_medians_per_side(self):
        rounds = [{"old": (100e3, 95), "new": (110e3, 95), "bun": (90e3, 95)} for _ in range(5)]
        out = self.report(rounds, wire_in={"old": 500, "new": 100, "bun": 200})
        # Rounds add 1..5 to each side's figure: the median is round 3's.
        self.assertRegex(out, r"\| wrk-get-c20 \| new \| 5/5 \|.*\| 103 \(101-105\) \|")
        self.assertRegex(out, r"\| wrk-get-c20 \| bun \| 5/5 \|.*\| 203 \(201-205\) \|")
        out = self.report(rounds)
        self.assertRegex(out, r"\| wrk-get-c20 \| new \| 5/5 \|.*\| - \|")

    def test_cpu_split_and_the_ceiling_at_user_zero(self):
        # NEW: 10 µs per op, 2 of them its own; Bun: 16 µs, 8 its own. With no user time
        # NEW would take 8 µs: 16 / 8 = 2.00x Bun at most.
        rounds = [{"new": (100e3, 95), "bun": (62.5e3, 95)} for _ in range(5)]
        out = self.report(rounds, user_us={"new": 2.0, "bun": 8.0})
        self.assertIn("| wrk-get-c20 | new | 2.00 | 8.00 | 10.00 | - |", out)
        self.assertIn("| wrk-get-c20 | bun | 8.00 | 8.00 | 16.00 | 2.00 |", out)
        self.assertNotIn("user µs/op", self.report(rounds))

    def test_too_few_saturated_rounds_give_no_ratio(self):
        rounds = [{"old": (100e3, 95), "new": (110e3, 60 if i < 3 else 95)} for i in range(5)]
        out = self.report(rounds)
        self.assertIn("unsaturated (2, 5 saturated rounds)", out)


class Plots(unittest.TestCase):
    def test_colour_per_server_and_style_per_percentile(self):
        self.assertNotEqual(colour_of("partyring"), colour_of("bun"))
        self.assertEqual(colour_of("bun"), colour_of("bun"))
        self.assertEqual(len(set(PERCENTILE_DASHES.values())), len(PERCENTILE_DASHES))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.svg")
            series = [{"label": f"{s} {q}", "colour": colour_of(s), "dash": PERCENTILE_DASHES[q],
                       "points": [(1, 10), (2, 20)]} for s in ("partyring", "bun") for q in ("p50", "p99")]
            self.assertTrue(line_plot(path, "t", "x", "y", series, log_y=True))
            with open(path) as f:
                polylines = [l for l in f.read().splitlines() if l.startswith("<polyline")]
        self.assertEqual(len(polylines), 4)
        bun = [l for l in polylines if f'stroke="{colour_of("bun")}"' in l]
        self.assertEqual(len(bun), 2)
        # bun p50 solid, bun p99 dashed: same colour, different styles.
        self.assertEqual(sum("stroke-dasharray" in l for l in bun), 1)
        self.assertFalse(line_plot(path, "t", "x", "y", []))


if __name__ == "__main__":
    unittest.main()
