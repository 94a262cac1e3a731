#!/usr/bin/env python3
"""Layering check for src/ (issue 14): import cycles between top-level modules, and file size.

Reads every `crate::a::...` path and every `super::` path that leaves its top-level module in
src/**/*.rs (comments stripped), maps each to the top-level module it names (`src/a.rs` or
`src/a/`), and reports the strongly connected components of that graph with more than one
module, with the edges that make them. Also reports files over MAX_LINES lines.

Usage: .ci/layers.py [--report]   (exit 1 on a cycle or an oversized file, unless --report)
"""
import os
import re
import sys

MAX_LINES = 800
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def top_modules():
    mods = set()
    for name in os.listdir(ROOT):
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            mods.add(name[:-3])
        elif os.path.isdir(os.path.join(ROOT, name)):
            mods.add(name)
    return mods


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def group_heads(text, start):
    """The first path segment of each item of the `{...}` group that opens at text[start]."""
    heads, depth, item_start = [], 0, start + 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                heads.append(text[item_start:i])
                break
        elif c == "," and depth == 1:
            heads.append(text[item_start:i])
            item_start = i + 1
    out = []
    for h in heads:
        m = re.match(r"\s*(\w+)", h)
        if m:
            out.append(m.group(1))
    return out


def referenced(code, modpath):
    """Top-level modules named by `crate::` paths, and by `super::` paths that climb to the root."""
    found = []
    for m in re.finditer(r"\bcrate::", code):
        rest = code[m.end():]
        if rest.startswith("{"):
            found += group_heads(code, m.end())
        else:
            n = re.match(r"(\w+)", rest)
            if n:
                found.append(n.group(1))
    for m in re.finditer(r"\b((?:super::)+)", code):
        ups = m.group(1).count("super::")
        if len(modpath) - ups != 0:
            continue  # stays inside its top-level module
        end = m.end()
        if code[end:].startswith("{"):
            found += group_heads(code, end)
        else:
            n = re.match(r"(\w+)", code[end:])
            if n:
                found.append(n.group(1))
    return found


def module_of(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def main():
    mods = top_modules()
    edges = {}
    big = []
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
            text = open(path, encoding="utf-8").read()
            lines = text.count("\n")
            if lines > MAX_LINES:
                big.append((rel, lines))
            src = module_of(rel)
            if src not in mods:
                continue
            code = strip_comments(text)
            modpath = rel[:-3].split(os.sep)
            if modpath[-1] == "mod":
                modpath.pop()
            for dst in referenced(code, modpath):
                if dst in mods and dst != src:
                    edges.setdefault(src, {}).setdefault(dst, set()).add(rel)
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    cycles = [c for c in sccs if len(c) > 1]
    for comp in cycles:
        print(f"import cycle between top-level modules: {' <-> '.join(comp)}")
        for a in comp:
            for b, files in sorted(edges.get(a, {}).items()):
                if b in comp:
                    print(f"  {a} -> {b}: {', '.join(sorted(files))}")
    for rel, n in sorted(big):
        print(f"file over {MAX_LINES} lines: src/{rel} ({n})")
    if not cycles and not big:
        print(f"layers: no import cycle among {len(mods)} top-level modules; no file over {MAX_LINES} lines")
    bad = bool(cycles or big)
    return 1 if bad and "--report" not in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())
