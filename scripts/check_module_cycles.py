#!/usr/bin/env python3
"""Fails when the library's modules import each other in a circle, at two levels: the top-level
modules (src/*.rs, src/*/), and the files (each src/**/*.rs is one node: a parent module file and
its children count as different files).

Reads every library source file under src/ (not src/bin/) and resolves each `crate::...`,
`super::...`, `self::...` and child-module path to the module it names: for the module level, the
top-level module; for the file level, the deepest file the path reaches. A `pub use` re-export
counts only where the file itself uses the name it re-exports; `mod` declarations do not count.
Exit status 1 with the cycle printed when either graph is not acyclic; otherwise prints the order
in which data flows (a topological order of the top-level modules) and exits 0. Comments and
string literals are ignored.

Usage: scripts/check_module_cycles.py [--graph] [SRC_DIR]
       scripts/check_module_cycles.py --self-test   (the check must catch planted cycles)
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


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]] (`self` inside braces is the prefix)."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, text):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(text):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        parts.append(text[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0:
                head = [seg for seg in part[:brace].split("::") if seg]
                walk(prefix + head, part[brace + 1 : part.rindex("}")])
            else:
                segs = [seg for seg in part.split("::") if seg]
                out.append(prefix + [seg for seg in segs if seg != "self"] if segs != ["self"] else prefix)

    walk([], tree)
    return out


def resolve(segs, mp, files):
    """The deepest file a path from the file at module path `mp` reaches, or None (another crate)."""
    if not segs:
        return None
    if segs[0] == "crate":
        base, rest = [], segs[1:]
    elif segs[0] in ("super", "self"):
        ups = 0
        while ups < len(segs) and segs[ups] == "super":
            ups += 1
        base = mp[: max(len(mp) - ups, 0)]
        rest = segs[ups:]
        if rest and rest[0] == "self":
            rest = rest[1:]
    elif tuple(mp + [segs[0]]) in files:
        base, rest = mp, segs
    else:
        return None
    target = list(base)
    for seg in rest:
        if tuple(target + [seg]) in files:
            target.append(seg)
        else:
            break
    return tuple(target)


def without_test_modules(text):
    """`text` without its `#[cfg(test)] mod name { ... }` blocks (tests are not the library's
    structure, and `super` inside them names their own file)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
        if not m:
            return text
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[i:]


def file_uses(text, mp, files):
    """The files the file at module path `mp` uses (see the module doc)."""
    found = set()
    text = without_test_modules(text)
    body = re.sub(r"\b(pub(\([^)]*\))?\s+)?mod\s+\w+\s*;", "", text)
    reexported = []
    for m in re.finditer(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", body):
        for path in expand_use_tree(m.group(2)):
            if m.group(1):
                reexported.append(path)
            else:
                found.add(resolve(path, mp, files))
    code = re.sub(r"\b(pub(\([^)]*\))?\s+)?use\s+[^;]+;", "", body)
    for path in reexported:
        if path and re.search(r"\b" + re.escape(path[-1]) + r"\b", code):
            found.add(resolve(path, mp, files))
    for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", code):
        found.add(resolve(m.group(1).split("::"), mp, files))
    for m in re.finditer(r"(?<![:\w])(\w+)::\w+", code):
        if tuple(mp + [m.group(1)]) in files:
            found.add(resolve(m.group(0).split("::"), mp, files))
    found.discard(None)
    found.discard(tuple(mp))
    return found


def find_cycle(graph):
    """A cycle of `graph` as a list of nodes (first = last), or None; and a topological order."""
    state, stack, order = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        order.append(node)
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle, order
    return None, order


def file_graph(src):
    files = {}
    for dirpath, _, filenames in os.walk(src):
        if os.path.relpath(dirpath, src).split(os.sep)[0] == "bin":
            continue
        for f in filenames:
            if f.endswith(".rs"):
                path = os.path.join(dirpath, f)
                files[tuple(module_path(src, path))] = path
    graph = {}
    for mp, path in files.items():
        with open(path, encoding="utf-8") as fh:
            text = strip_comments_and_strings(fh.read())
        graph[mp] = file_uses(text, list(mp), files)
    return graph, files


def self_test():
    """Plants a module-level and a file-level back edge in a small tree and fails unless each is
    reported (and the tree without them passes), so that CI shows the check can fail."""
    import subprocess
    import tempfile

    tree = {
        "lib.rs": "pub mod a;\npub mod b;\n",
        "a/mod.rs": "pub mod x;\npub mod y;\npub use x::X;\nuse y::Y;\n",
        "a/x.rs": "pub struct X;\n",
        "a/y.rs": "use super::x::X;\npub struct Y(X);\n",
        "b.rs": "use crate::a::X;\n",
    }
    cases = [
        ("clean", {}, 0, ""),
        ("module back edge", {"a/x.rs": "use crate::b;\npub struct X;\n"}, 1, "module cycle"),
        ("file back edge", {"a/x.rs": "use super::y::Y;\npub struct X;\n"}, 1, "file cycle"),
        ("child using its parent's code", {"a/x.rs": "pub struct X(super::Y);\n"}, 1, "file cycle"),
    ]
    for name, changes, want, message in cases:
        with tempfile.TemporaryDirectory() as d:
            for rel, text in {**tree, **changes}.items():
                os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
                with open(os.path.join(d, rel), "w", encoding="utf-8") as fh:
                    fh.write(text)
            r = subprocess.run([sys.executable, __file__, d], capture_output=True, text=True)
            if r.returncode != want or message not in r.stderr:
                print(f"self-test `{name}`: exit {r.returncode}, stderr {r.stderr!r}", file=sys.stderr)
                return 1
    print(f"self-test: {len(cases)} planted trees judged right")
    return 0


def main():
    if "--self-test" in sys.argv:
        return self_test()
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
    cycle, order = find_cycle(graph)
    if cycle:
        print("module cycle: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    files_graph, files = file_graph(src)
    file_cycle, _ = find_cycle(files_graph)
    if file_cycle:
        names = [os.path.relpath(files[n], os.path.dirname(src)) for n in file_cycle]
        print("file cycle: " + " -> ".join(names), file=sys.stderr)
        return 1
    print(f"no module cycle, no file cycle ({len(files)} files); dependency order: " + " -> ".join(order))
    return 0


if __name__ == "__main__":
    sys.exit(main())
