#!/usr/bin/env python3
"""Tests of .ci/layers.py on small crates written to a temporary directory: each case is a
tree of files and the cycles the script must report (as `parent: a <-> b`), no more, no less.

Usage: python3 .ci/test_layers.py
"""
import importlib.util
import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ beside the CI scripts
_spec = importlib.util.spec_from_file_location(
    "layers", os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers.py")
)
layers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layers)


def cycles(tree):
    """Writes `tree` ({path: text}, root `lib.rs`) and returns the cycles found."""
    with tempfile.TemporaryDirectory() as d:
        for path, text in tree.items():
            full = os.path.join(d, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as fh:
                fh.write(text)
        found = layers.crate_cycles("t", os.path.join(d, "lib.rs"))
    return sorted(f"{'::'.join(p) or '(crate)'}: {' <-> '.join(c)}" for _, p, c, _ in found)


LIB = "pub mod m;\n"


class Layers(unittest.TestCase):
    def test_sibling_files_through_super_and_crate_paths(self):
        tree = {
            "lib.rs": LIB,
            "m/mod.rs": "mod a;\nmod b;\nmod c;\n",
            "m/a.rs": "use super::b::B;\npub struct A;\n",
            "m/b.rs": "pub struct B(crate::m::a::A);\n",
            "m/c.rs": "use super::{a::A, b::B};\n",
        }
        self.assertEqual(cycles(tree), ["m: a <-> b"])

    def test_one_way_is_clean(self):
        tree = {
            "lib.rs": LIB,
            "m/mod.rs": "mod a;\nmod b;\npub use a::A;\n",
            "m/a.rs": "use super::b::B;\npub struct A(B);\n",
            "m/b.rs": "pub struct B;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        }
        self.assertEqual(cycles(tree), [])

    def test_comments_and_strings_are_not_code(self):
        tree = {
            "lib.rs": LIB,
            "m/mod.rs": "mod a;\nmod b;\n",
            "m/a.rs": "use super::b::B;\n",
            "m/b.rs": (
                "// use super::a::A;\n/* super::a::A /* nested */ super::a::A */\n"
                'const S: &str = "super::a::A */ /*";\nconst C: char = \'"\';\n'
                'const R: &str = r#"super::a::A"#;\n'
            ),
        }
        self.assertEqual(cycles(tree), [])

    def test_a_name_reexported_by_the_parent_counts_as_its_file(self):
        tree = {
            "lib.rs": LIB,
            "m/mod.rs": "mod a;\nmod b;\npub use b::{Bee, Other};\n",
            "m/a.rs": "pub fn f(_: super::Bee) {}\n",
            "m/b.rs": "pub struct Bee;\npub struct Other;\nfn g() { super::a::f(Bee) }\n",
        }
        self.assertEqual(cycles(tree), ["m: a <-> b"])

    def test_the_parent_file_is_a_node_inside_a_directory(self):
        tree = {
            "lib.rs": LIB,
            "m/mod.rs": "mod a;\npub struct Opts(a::Plan);\n",
            "m/a.rs": "pub struct Plan;\nfn f(_: super::Opts) {}\n",
        }
        self.assertEqual(cycles(tree), ["m: a <-> mod.rs"])

    def test_a_path_attribute_file_belongs_to_its_declaring_module(self):
        tree = {
            "lib.rs": LIB,
            "m/mod.rs": "mod a;\nmod b;\n",
            "m/a.rs": '#[cfg(test)]\n#[path = "a_tests.rs"]\nmod tests;\npub fn f() {}\n',
            "m/a_tests.rs": "use super::*;\nuse crate::m::b::g;\n",
            "m/b.rs": "pub fn g() { super::a::f() }\n",
        }
        self.assertEqual(cycles(tree), ["m: a <-> b"])

    def test_nested_directories_and_top_level_modules(self):
        tree = {
            "lib.rs": "pub mod m;\npub mod n;\npub use n::Thing;\n",
            "m/mod.rs": "pub mod d;\n",
            "m/d/mod.rs": "mod x;\nmod y;\n",
            "m/d/x.rs": "use super::super::d::y::Y;\npub struct X;\n",
            "m/d/y.rs": "pub struct Y(super::x::X);\nfn t(_: crate::Thing) {}\n",
            "n.rs": "pub struct Thing;\nfn f() { crate::m::d::g() }\n",
        }
        self.assertEqual(cycles(tree), ["(crate): m <-> n", "m::d: x <-> y"])

    def test_group_items_are_not_read_as_child_paths(self):
        # `crate::{b::B}` names the top-level `b`, not the sibling `m::b`.
        tree = {
            "lib.rs": "pub mod b;\npub mod m;\n",
            "b.rs": "pub struct B;\n",
            "m/mod.rs": "mod a;\nmod b;\n",
            "m/a.rs": "use crate::{b::B};\npub struct A;\n",
            "m/b.rs": "use super::a::A;\n",
        }
        self.assertEqual(cycles(tree), [])


if __name__ == "__main__":
    unittest.main()
