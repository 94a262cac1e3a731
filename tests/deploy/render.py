#!/usr/bin/env python3
"""Helpers for the deploy tests: turn the production files under deploy/ into the files a
test runs, and check that docs/deploy.md shows those files verbatim.

  render.py conf TEMPLATE OUT [--sub OLD NEW]... [--nodes ADDR...]
      Copies TEMPLATE to OUT with each OLD line replaced by NEW (each OLD must occur exactly
      once, as a whole line once stripped of indentation) and, with --nodes, the lines between
      "# nodes: begin" and "# nodes: end" replaced by one "server ADDR PARAMS;" line per node,
      PARAMS being those of the template's first server line there. Fails when a substitution finds nothing, and when a `listen` or upstream `server`
      line of the result is not on loopback (127.0.0.0/8): a test never sends traffic
      elsewhere, whatever the template says.

  render.py check-docs DOC FILE...
      Fails unless every FILE appears verbatim in DOC (so the docs show what is tested).

  render.py unit-cmd UNIT BIN PORT STATE_DIR
      Prints, one per line, the environment (KEY=VALUE lines, then a line "--") and the
      command line of the unit's ExecStart= with the binary replaced by BIN and "--port N" by
      "--port PORT" (and any --host by 127.0.0.1), /var/lib/<StateDirectory=> by STATE_DIR
      wherever it occurs; the last line is "nofile=N" from LimitNOFILE=.
"""

import ipaddress
import re
import sys


def die(msg):
    print(f"render.py: {msg}", file=sys.stderr)
    sys.exit(1)


def render_conf(args):
    template, out, rest = args[0], args[1], args[2:]
    subs, nodes = [], None
    i = 0
    while i < len(rest):
        if rest[i] == "--sub" and i + 2 < len(rest):
            subs.append((rest[i + 1], rest[i + 2]))
            i += 3
        elif rest[i] == "--nodes":
            nodes = rest[i + 1 :]
            i = len(rest)
        else:
            die(f"bad argument {rest[i]!r}")
    lines = open(template, encoding="utf-8").read().split("\n")
    for old, new in subs:
        hits = [k for k, line in enumerate(lines) if line.strip() == old]
        if len(hits) != 1:
            die(f"{template}: expected the line {old!r} once, found it {len(hits)} times")
        k = hits[0]
        indent = lines[k][: len(lines[k]) - len(lines[k].lstrip())]
        lines[k] = indent + new
    if nodes is not None:
        try:
            b = next(k for k, l in enumerate(lines) if l.strip() == "# nodes: begin")
            e = next(k for k, l in enumerate(lines) if l.strip() == "# nodes: end")
        except StopIteration:
            die(f"{template}: no '# nodes: begin' / '# nodes: end' block")
        indent = lines[b][: len(lines[b]) - len(lines[b].lstrip())]
        # Each node gets the parameters of the template's first server line (max_fails=...).
        first = next((l for l in lines[b + 1 : e] if l.strip().startswith("server ")), None)
        if first is None:
            die(f"{template}: no server line between the node markers")
        params = first.strip().rstrip(";").split()[2:]
        lines[b + 1 : e] = [f"{indent}{' '.join(['server', n] + params)};" for n in nodes]
    text = "\n".join(lines)
    # Loopback only: every listen and every upstream server of the result.
    for m in re.finditer(r"^\s*(listen|server)\s+([^\s;]+)", text, re.M):
        word, target = m.group(1), m.group(2)
        if target == "{":  # a server { block, not an upstream server
            continue
        host = target.rsplit(":", 1)[0] if ":" in target else target
        if word == "listen" and host.isdigit():
            die(f"{template}: '{m.group(0).strip()}' listens on every address; tests use 127.0.0.1")
        try:
            ok = ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            ok = False
        if not ok:
            die(f"{template}: '{m.group(0).strip()}' is not a loopback address after rendering")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


def check_docs(args):
    doc = open(args[0], encoding="utf-8").read()
    bad = [p for p in args[1:] if open(p, encoding="utf-8").read().rstrip("\n") not in doc]
    if bad:
        die(f"{args[0]} does not show these files verbatim (update the doc): {' '.join(bad)}")


def unit_cmd(args):
    unit, binary, port, state_dir = args
    env, execstart, nofile, state = [], None, None, None
    for line in open(unit, encoding="utf-8"):
        line = line.strip()
        if line.startswith("StateDirectory="):
            state = "/var/lib/" + line[len("StateDirectory=") :]
        elif line.startswith("Environment="):
            env += line[len("Environment=") :].split()
        elif line.startswith("ExecStart="):
            execstart = line[len("ExecStart=") :].split()
        elif line.startswith("LimitNOFILE="):
            nofile = line[len("LimitNOFILE=") :]
    if not execstart or not nofile:
        die(f"{unit}: no ExecStart= or LimitNOFILE=")
    cmd = [binary] + execstart[1:]
    if "--port" not in cmd:
        die(f"{unit}: ExecStart= has no --port")
    cmd[cmd.index("--port") + 1] = port
    if "--host" in cmd:  # the test node listens on loopback, whatever the unit says
        cmd[cmd.index("--host") + 1] = "127.0.0.1"
    out = env + ["--"] + cmd
    if state:
        out = [w.replace(state, state_dir) for w in out]
    print("\n".join(out + [f"nofile={nofile}"]))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        die("usage: render.py conf|check-docs|unit-cmd ...")
    {"conf": render_conf, "check-docs": check_docs, "unit-cmd": unit_cmd}.get(
        sys.argv[1], lambda _: die(f"unknown command {sys.argv[1]}")
    )(sys.argv[2:])
