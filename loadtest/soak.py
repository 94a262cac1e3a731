#!/usr/bin/env python3
"""Helpers of loadtest/soak.sh (stdlib only).

  soak.py post ADDR SECONDS LIMIT ROOMS RATE OUT.json
      POSTs unique messages round-robin to ROOMS rooms of the `main` party, RATE per second, for
      SECONDS, one keep-alive connection, one request in flight. Any answer other than 200 OK
      fails. Writes, per room, the newest LIMIT acknowledged messages in order: exactly what
      that room's history must be (no one else writes these rooms).
  soak.py check ADDR OUT.json
      GETs each room's history and fails unless it equals the expected list.
  soak.py verdict SAMPLES.tsv WARMUP_S CHURN_CONNS FDS_BEFORE FDS_AFTER
      Fails if RSS or fds grew after warm-up (see the thresholds below), or if the fd count did
      not come back once the load stopped, or if any storage failure was counted.
"""

import http.client
import json
import sys
import time


def post(addr, seconds, limit, rooms, rate, out):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    expected = {f"soak-post-{i}": [] for i in range(rooms)}
    start = time.monotonic()
    deadline = start + seconds
    n = 0
    while time.monotonic() < deadline:
        room = f"soak-post-{n % rooms}"
        msg = f"post-{n}-" + "p" * 64
        body = json.dumps({"message": msg})
        conn.request("POST", f"/parties/main/{room}", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200 or data != b"OK":
            sys.exit(f"soak: POST {n} to {room} answered {resp.status} {data[:200]!r}")
        acked = expected[room]
        acked.append(msg)
        if len(acked) > limit:
            del acked[0]
        n += 1
        pause = start + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    with open(out, "w") as f:
        json.dump(expected, f)
    print(f"soak: {n} POSTs acknowledged")


def check(addr, path):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    with open(path) as f:
        expected = json.load(f)
    missing = 0
    for room, want in expected.items():
        conn.request("GET", f"/parties/main/{room}")
        resp = conn.getresponse()
        got = json.loads(resp.read())
        if resp.status != 200 or got != want:
            lost = [m for m in want if m not in got]
            extra = [m for m in got if m not in want]
            print(f"soak: {room}: {len(lost)} acknowledged missing, {len(extra)} unexpected")
            missing += 1
    if missing:
        sys.exit(f"soak: FAILED: {missing} rooms differ from their acknowledged messages")
    total = sum(len(v) for v in expected.values())
    print(f"soak: every acknowledged message is there ({total} in {len(expected)} rooms)")


def verdict(samples, warmup, churn, fds_before, fds_after):
    rows = []
    with open(samples) as f:
        header = f.readline().split()
        for line in f:
            rows.append(dict(zip(header, map(float, line.split()))))
    after = [r for r in rows if r["t"] >= warmup]
    if len(after) < 4:
        sys.exit(f"soak: FAILED: only {len(after)} samples after warm-up; run longer")
    q = max(2, len(after) // 4)
    base, end = after[:q], after[-q:]

    def mean(rs, k):
        return sum(r[k] for r in rs) / len(rs)

    failures = []
    rss0, rss1 = mean(base, "rss_kib"), mean(end, "rss_kib")
    # RSS: allocator noise and the history filling up to its limit are allowed for; a leak that
    # grows with the work done is not.
    if rss1 > rss0 * 1.20 + 8 * 1024:
        failures.append(f"RSS grew from {rss0:.0f} KiB to {rss1:.0f} KiB after warm-up")
    fd0 = max(r["fds"] for r in base)
    fd1 = max(r["fds"] for r in end)
    # fds under load vary by the churn connections open at the moment of a sample.
    if fd1 > fd0 + churn + 16:
        failures.append(f"fds grew from {fd0:.0f} to {fd1:.0f} under the same load")
    if fds_after > fds_before + 8:
        failures.append(f"fds did not come back: {fds_before} before the load, {fds_after} after")
    if rows[-1]["storage_failures"] > 0:
        failures.append(f"{rows[-1]['storage_failures']:.0f} storage failures counted")
    print(
        f"soak: RSS {rss0:.0f} -> {rss1:.0f} KiB, fds under load {fd0:.0f} -> {fd1:.0f}, "
        f"fds idle {fds_before} -> {fds_after}"
    )
    if failures:
        sys.exit("soak: FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "post":
        post(args[0], float(args[1]), int(args[2]), int(args[3]), float(args[4]), args[5])
    elif cmd == "check":
        check(args[0], args[1])
    elif cmd == "verdict":
        verdict(args[0], float(args[1]), int(args[2]), int(args[3]), int(args[4]))
    else:
        sys.exit(__doc__)
