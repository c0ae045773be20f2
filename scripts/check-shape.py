#!/usr/bin/env python3
"""The codebase's shape, measured: import circles between the files of a crate, dependency
loops between crates (dev-dependencies included), source files over 600 lines and functions
over 100 lines (tests aside). Prints what it finds; exits 1 on a circle or a loop, which are
rules; long files and functions are aims and only listed."""

import collections
import json
import re
import subprocess
import sys

ROOT = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                      check=True).stdout.strip()


def sources():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                          "*.rs"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return [f for f in out.split() if "/src/" in f]


def without_tests_and_comments(text):
    text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def module_of(path):
    parts = path.split("/")
    crate = parts[1] if parts[0] == "crates" else parts[0]
    inner = parts[parts.index("src") + 1:]
    inner[-1] = inner[-1][:-3]
    if inner[-1] in ("mod", "lib", "main"):
        inner = inner[:-1]
    return crate, tuple(inner)


def import_edges(files):
    modules = {module_of(f): f for f in files}
    edges = collections.defaultdict(set)
    for (crate, path), f in modules.items():
        text = without_tests_and_comments(open(f"{ROOT}/{f}").read())
        targets = []
        for m in re.finditer(r"\b(crate|super|self)((?:::\w+)*)(::\{)?", text):
            rest = [p for p in m.group(2).split("::") if p]
            base = {"crate": [], "super": list(path[:-1]), "self": list(path)}[m.group(1)]
            targets.append(base + rest)
        for child in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod (\w+);", text, flags=re.M):
            if re.search(r"(?<![:\w])" + child + r"::", text):
                targets.append(list(path) + [child])
        for t in targets:
            for k in range(len(t), -1, -1):
                if (crate, tuple(t[:k])) in modules:
                    target = tuple(t[:k])
                    # A module using its ancestors (the crate's re-exports, its room's types)
                    # is how Rust modules nest, not a circle.
                    if target != path and target != path[:len(target)]:
                        edges[(crate, path)].add((crate, target))
                    break
    return edges


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def crate_graph():
    meta = json.loads(subprocess.run(["cargo", "metadata", "-q", "--format-version", "1",
                                      "--no-deps"], capture_output=True, text=True, cwd=ROOT,
                                     check=True).stdout)
    names = {p["name"] for p in meta["packages"]}
    return {p["name"]: {d["name"] for d in p["dependencies"] if d["name"] in names}
            for p in meta["packages"]}


def long_functions(files):
    found = []
    for f in files:
        lines = without_tests_and_comments(open(f"{ROOT}/{f}").read()).split("\n")
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)",
                         line)
            if not m:
                continue
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == m.group(1) + "}"),
                       None)
            if end is not None and end - i + 1 > 100:
                found.append((end - i + 1, f, m.group(7)))
    return sorted(found, reverse=True)


def main():
    files = sources()
    failed = False
    circles = cycles(import_edges(files))
    print("import circles between files:", "none" if not circles else "")
    for c in circles:
        failed = True
        print("  ", c[0][0], sorted("/".join(m[1]) or "<root>" for m in c))
    loops = cycles(crate_graph())
    print("dependency loops between crates:", "none" if not loops else "")
    for c in loops:
        failed = True
        print("  ", sorted(c))
    print("source files over 600 lines:")
    for f in files:
        n = sum(1 for _ in open(f"{ROOT}/{f}"))
        if n > 600:
            print(f"   {n} {f}")
    print("functions over 100 lines:")
    for n, f, name in long_functions(files):
        print(f"   {n} {f} {name}")
    sys.exit(1 if failed else 0)


main()
