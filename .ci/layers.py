#!/usr/bin/env python3
"""Layering check (issue 14): import cycles between modules, and file size.

Two crates are read: the server (src/, root src/lib.rs; src/main.rs is a separate binary crate
and is skipped) and the load generator (loadtest/src/, root loadtest/src/main.rs). The module
tree is built the way rustc builds it: from the crate root, following `mod x;` declarations
(with `#[path = "..."]`) and inline `mod x { ... }` blocks, so every offset of every file has a
logical module path (a test module's `use super::*` refers to its own file, not the sibling).

Every path in the code (comments and string literals removed) that starts with `crate::`,
`super::`, `self::` or the name of a child module is resolved to an absolute module path. Then,
for every module that has children, a graph over those children: an edge c1 -> c2 when code
inside c1 names something inside c2. Names re-exported by the parent's `pub use c::{...}` count
as naming c. Inside a module directory the parent's own file (mod.rs) is a node too, minus its
`mod` declarations and `pub use` re-exports; at the crate level the root file is not (it is the
binary's or library's entry point, above everything). Each strongly connected component with
more than one node is reported, with the files behind each of its edges.

Also reports files in src/ over MAX_LINES lines.

Usage: .ci/layers.py [--report]
  Prints every finding. Exits 1 on any finding (a cycle at any level, an oversized file),
  or 0 with --report (print only).
"""
import os
import re
import sys

MAX_LINES = 800
REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# (crate name for messages, crate root file, directory whose files the size rule covers)
CRATES = [
    ("partyring", "src/lib.rs", "src"),
    ("partyring-load", "loadtest/src/main.rs", None),
]

# ---- lexing: comments out, literals emptied ----

_TOKEN = re.compile(
    r"""//[^\n]*                       # line comment
      | /\*                            # block comment start (nesting handled below)
      | b?r(\#*)"                      # raw string start
      | b?"(?:\\.|[^"\\])*"            # string
      | b?'(?:\\.|\\u\{[0-9a-fA-F]+\}|[^'\\\n])'  # char / byte literal
    """,
    re.X | re.S,
)


def strip(text):
    """The code with comments removed and every string/char literal replaced by `""`."""
    out, i, n = [], 0, len(text)
    while i < n:
        m = _TOKEN.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        tok = m.group(0)
        if tok.startswith("//"):
            i = m.end()
        elif tok == "/*":
            depth, j = 1, m.end()
            while depth and j < n:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(" ")
            i = j
        elif m.group(1) is not None:
            close = '"' + m.group(1)
            j = text.find(close, m.end())
            j = n if j < 0 else j + len(close)
            out.append('""')
            i = j
        else:
            out.append('""')
            i = m.end()
    return "".join(out)


# ---- the module tree ----

_MOD = re.compile(
    r"""((?:\#\[[^\]]*\]\s*)*)          # attributes
        (?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])""",
    re.X,
)


def matching_brace(code, start):
    depth = 0
    for i in range(start, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(code)


class File:
    def __init__(self, path, modpath, children_dir):
        self.path = path
        self.modpath = modpath  # logical path of the file's module, e.g. ["storage", "log"]
        self.children_dir = children_dir  # where its `mod x;` files are
        with open(path, encoding="utf-8") as fh:
            self.raw = fh.read()
        self.code = strip(self.raw)
        # Inline modules: (start, end, name) spans of their bodies in `code`.
        self.inline = []
        self.decls = []  # (start, end) of `mod x;` / `mod x {` heads: not references
        for m in _MOD.finditer(self.code):
            self.decls.append((m.start(), m.end()))
            if m.group(3) == "{":
                end = matching_brace(self.code, m.end() - 1)
                self.inline.append((m.end(), end, m.group(2)))

    def inline_at(self, pos):
        """Names of the inline modules enclosing `pos`, outermost first."""
        return [name for (s, e, name) in self.inline if s <= pos < e]


def load_crate(root_rel):
    """Every file of a crate (root: relative to the repository, or absolute), and the children
    of every module, by logical path."""
    root = os.path.join(REPO, root_rel)
    files, children = [], {}

    def visit(path, modpath, children_dir):
        f = File(path, modpath, children_dir)
        files.append(f)
        for m in _MOD.finditer(f.code):
            name = m.group(2)
            inline = f.inline_at(m.start())
            parent = modpath + inline
            children.setdefault(tuple(parent), set()).add(name)
            if m.group(3) == "{":
                continue
            attr = _raw_path_attr(f, m)
            if attr is not None:
                base = os.path.dirname(path) if not inline else os.path.join(children_dir, *inline)
                child = os.path.normpath(os.path.join(base, attr))
                # A file loaded through #[path] owns its directory, like a mod.rs.
                visit(child, parent + [name], os.path.dirname(child))
                continue
            base = os.path.join(children_dir, *inline)
            flat, nested = os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")
            if os.path.exists(flat):
                visit(flat, parent + [name], os.path.join(base, name))
            elif os.path.exists(nested):
                visit(nested, parent + [name], os.path.join(base, name))

    visit(root, [], os.path.dirname(root))
    return files, children


def _raw_path_attr(f, m):
    """The `#[path = "..."]` on the declaration `m`, read from the raw text (`code` has its
    literals emptied)."""
    if "path" not in m.group(1):
        return None
    found = re.search(
        r'#\[\s*path\s*=\s*"([^"]*)"\s*\]\s*(?:#\[[^\]]*\]\s*)*'
        r"(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+" + m.group(2) + r"\s*;",
        f.raw,
    )
    return found.group(1) if found else None


# ---- paths ----

_START = re.compile(r"(?<![\w:.$])(\$?crate|super|self|[A-Za-z_]\w*)\s*::\s*")
_SUPER = re.compile(r"super\s*::\s*")
_SEG = re.compile(r"\s*(\*|\{|[A-Za-z_]\w*)")
_SEP = re.compile(r"\s*::\s*")


def path_trees(code, pos, end=None):
    """The paths of the path (or `use` tree) whose segments start at code[pos] (and end before
    `end`), as lists of segments, and the offset where it ends; a group `{a, b::c}` yields one
    path per item, `*` is kept as a segment."""
    end = len(code) if end is None else end
    segs, i = [], pos
    while True:
        m = _SEG.match(code, i, end)
        if not m:
            return ([segs] if segs else []), i
        tok = m.group(1)
        if tok == "{":
            close = matching_brace(code, m.start(1))
            out, depth, item = [], 0, m.end(1)
            for j in range(m.start(1), close + 1):
                c = code[j]
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                if (c == "," and depth == 1) or j == close:
                    out += [segs + sub for sub in path_trees(code, item, j)[0]]
                    item = j + 1
            return (out or [segs]), close + 1
        segs.append(tok)
        if tok == "*":
            return [segs], m.end()
        n = _SEP.match(code, m.end(), end)
        if not n or code.startswith("<", n.end(), end):
            return [segs], m.end()
        i = n.end()


def references(f, children):
    """(module of the code, absolute path, is_reexport) for every path in file `f` that
    starts at a module: `crate::`, `super::`, `self::` or a child module's name."""
    out, consumed = [], 0
    for m in _START.finditer(f.code):
        if m.start() < consumed or any(s <= m.start() < e for (s, e) in f.decls):
            continue
        here = f.modpath + f.inline_at(m.start())
        head = m.group(1)
        before = f.code[max(0, m.start() - 40) : m.start()]
        reexport = re.search(r"\bpub(?:\s*\([^)]*\))?\s+use\s+(?:::)?\s*$", before) is not None
        if head in ("crate", "$crate"):
            base = []
        elif head == "super":
            base = here[:]
            rest_start = m.start()
            while k := _SUPER.match(f.code, rest_start):
                if base:
                    base.pop()
                rest_start = k.end()
            paths, consumed = path_trees(f.code, rest_start)
            out += [(here, base + p, reexport) for p in paths]
            continue
        elif head == "self":
            base = here[:]
        elif head in children.get(tuple(here), ()):
            base = here + [head]
        else:
            continue
        paths, consumed = path_trees(f.code, m.end())
        out += [(here, base + p, reexport) for p in paths]
    return out


# ---- graphs ----


def sccs(nodes, edges):
    """Tarjan's strongly connected components with more than one node."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

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
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


ROOT_NODE = "mod.rs"


def crate_cycles(crate, root_rel):
    """[(crate, parent module path, component, edges)] for every cycle in the crate."""
    files, children = load_crate(root_rel)
    refs = [(f, references(f, children)) for f in files]
    # Names each module re-exports from one of its children (`pub use c::{A, B}`): A -> c.
    aliases = {}
    for f, found in refs:
        for here, path, reexport in found:
            n = len(here)
            if reexport and len(path) > n + 1 and path[:n] == here and path[n] in children.get(
                tuple(here), ()
            ):
                aliases.setdefault(tuple(here), {})[path[-1]] = path[n]
    findings = []
    for parent, kids in sorted(children.items()):
        parent, depth = list(parent), len(parent)
        alias = aliases.get(tuple(parent), {})
        edges = {}
        for f, found in refs:
            for here, path, reexport in found:
                if here[:depth] != parent or path[:depth] != parent or len(here) < depth:
                    continue
                if len(here) == depth:
                    # The parent's own code: its re-exports are not dependencies, and at the
                    # crate level the root file is not a node.
                    if reexport or not depth:
                        continue
                    src = ROOT_NODE
                else:
                    src = here[depth]
                if len(path) == depth or path[depth] == "*":
                    dst = ROOT_NODE
                elif path[depth] in kids:
                    dst = path[depth]
                else:
                    dst = alias.get(path[depth], ROOT_NODE)
                if dst == src or (dst == ROOT_NODE and not depth):
                    continue
                rel = os.path.relpath(f.path, REPO)
                edges.setdefault(src, {}).setdefault(dst, set()).add(rel)
        nodes = set(kids) | ({ROOT_NODE} if depth else set())
        for comp in sccs(nodes, edges):
            findings.append((crate, parent, comp, edges))
    return findings


def main():
    findings = []
    for crate, root_rel, _ in CRATES:
        findings += crate_cycles(crate, root_rel)
    for crate, parent, comp, edges in findings:
        where = f"inside {crate}::{'::'.join(parent)}" if parent else f"between {crate}'s top-level modules"
        print(f"import cycle {where}: {' <-> '.join(comp)}")
        for a in comp:
            for b, files in sorted(edges.get(a, {}).items()):
                if b in comp:
                    print(f"  {a} -> {b}: {', '.join(sorted(files))}")
    big = []
    for _, _, size_dir in CRATES:
        if not size_dir:
            continue
        for dirpath, _, names in os.walk(os.path.join(REPO, size_dir)):
            for name in names:
                if name.endswith(".rs"):
                    path = os.path.join(dirpath, name)
                    with open(path, encoding="utf-8") as fh:
                        lines = fh.read().count("\n")
                    if lines > MAX_LINES:
                        big.append((os.path.relpath(path, REPO), lines))
    for rel, n in sorted(big):
        print(f"file over {MAX_LINES} lines: {rel} ({n})")
    if not findings and not big:
        print(f"layers: no import cycle at any module level; no file over {MAX_LINES} lines")
    bad = bool(findings or big)
    return 1 if bad and "--report" not in sys.argv[1:] else 0


if __name__ == "__main__":
    sys.setrecursionlimit(10000)
    sys.exit(main())
