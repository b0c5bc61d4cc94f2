#!/usr/bin/env python3
"""Fails when the top-level modules of the library (src/*.rs, src/*/) import each other in a circle.

Reads every library source file under src/ (not src/bin/), resolves each `crate::a::...` and
`super::...` path to the top-level module it names, and builds the graph "module A uses module B".
Exit status 1 with the cycle printed when the graph is not acyclic; otherwise prints the order in
which data flows (a topological order) and exits 0. Comments and string literals are ignored.

Usage: scripts/check_module_cycles.py [--graph] [SRC_DIR]
"""
import os
import re
import sys


def strip_comments_and_strings(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def module_path(src, path):
    """The module path of a file: src/a/b.rs -> [a, b]; src/a/mod.rs -> [a]; src/lib.rs -> []."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return rel


def uses(text, modpath, top_modules):
    """Top-level modules named by the paths in `text` (a file at `modpath`)."""
    found = set()
    # `use crate::{a, b::c}` groups: every first segment inside the braces counts.
    for group in re.finditer(r"\bcrate::\{([^}]*)\}", text):
        for item in group.group(1).split(","):
            name = item.strip().split("::")[0].strip()
            if name in top_modules:
                found.add(name)
    for m in re.finditer(r"\bcrate::(\w+)", text):
        if m.group(1) in top_modules:
            found.add(m.group(1))
    for m in re.finditer(r"\b((?:super::)+)(\w+)", text):
        depth = m.group(1).count("super::")
        # In a mod.rs file `super` is the parent of the directory's module; in a.rs likewise.
        base = modpath[: max(len(modpath) - depth, 0)]
        target = base + [m.group(2)]
        if target and target[0] in top_modules:
            found.add(target[0])
        if not base and m.group(2) == "{" :
            pass
    for group in re.finditer(r"\b((?:super::)+)\{([^}]*)\}", text):
        depth = group.group(1).count("super::")
        base = modpath[: max(len(modpath) - depth, 0)]
        for item in group.group(2).split(","):
            name = item.strip().split("::")[0].strip()
            target = base + [name] if name else base
            if target and target[0] in top_modules:
                found.add(target[0])
    return found


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_graph = "--graph" in sys.argv
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    src = os.path.normpath(src)
    top_modules = set()
    for entry in os.listdir(src):
        full = os.path.join(src, entry)
        if entry == "bin" or entry.startswith("."):
            continue
        if os.path.isdir(full):
            top_modules.add(entry)
        elif entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            top_modules.add(entry[:-3])
    graph = {m: set() for m in top_modules}
    for dirpath, dirnames, filenames in os.walk(src):
        if os.path.relpath(dirpath, src).split(os.sep)[0] == "bin":
            continue
        for f in filenames:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            mp = module_path(src, path)
            if not mp:
                continue
            with open(path, encoding="utf-8") as fh:
                text = strip_comments_and_strings(fh.read())
            for used in uses(text, mp, top_modules):
                if used != mp[0]:
                    graph[mp[0]].add(used)
    if show_graph:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '(nothing)'}")
    # Depth-first search for a back edge; report the first cycle found.
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                return cycle
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        order.append(node)
        return None

    order = []
    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                print("module cycle: " + " -> ".join(cycle), file=sys.stderr)
                return 1
    print("no module cycle; dependency order: " + " -> ".join(order))
    return 0


if __name__ == "__main__":
    sys.exit(main())
