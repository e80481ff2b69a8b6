"""The import graph of the regnet package, read from the source (every import statement,
including those inside functions).

    python tools/imports.py            # the graph as text: module -> the regnet modules it imports
    python tools/imports.py --dot      # Graphviz
    python tools/imports.py --layers   # modules grouped by depth
    python tools/imports.py --update docs/design.md   # rewrite the generated block there

``tests/test_architecture.py`` uses ``graph()`` to fail on a cycle or on a function-level import
of a regnet module.
"""

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "regnet"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(current: str, is_package: bool, level: int, target: str | None) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def reexports(mods: dict[str, Path]) -> dict[str, dict[str, str]]:
    """``{package: {name: module that defines it}}`` for the names a package's ``__init__`` takes
    from its own submodules (``from .core import Dense``), followed through nested packages."""
    table: dict[str, dict[str, str]] = {}
    for name, path in mods.items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                source = f"{name}.{node.module}"
                if source in mods:
                    for alias in node.names:
                        table.setdefault(name, {})[alias.asname or alias.name] = source
    for names in table.values():  # a name re-exported from a nested package: to its defining module
        for key, source in names.items():
            seen = set()
            while source in table and key in table[source] and source not in seen:
                seen.add(source)
                source = table[source][key]
            names[key] = source
    return table


def imports(
    name: str, path: Path, known: set[str], reexported: dict[str, dict[str, str]] | None = None
) -> list[tuple[str, int, bool]]:
    """``(imported regnet module, line, inside a function)`` for every import in the file; a name
    taken from a package that re-exports it counts as an import of the module that defines it."""
    reexported = reexported or {}
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                        found.append((_longest_known(alias.name, known), child.lineno, in_function))
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(name, is_package, child.level, child.module) if child.level else child.module or ""
                if base == PACKAGE or base.startswith(PACKAGE + "."):
                    for alias in child.names:
                        full = f"{base}.{alias.name}"
                        if full in known:
                            target = full
                        else:
                            package = _longest_known(base, known)
                            target = reexported.get(package, {}).get(alias.name, package)
                        found.append((target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _longest_known(dotted: str, known: set[str]) -> str:
    parts = dotted.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def graph(root: Path = ROOT) -> dict[str, list[tuple[str, int, bool]]]:
    """``{module: [(imported module, line, in a function), ...]}`` for every module of the package."""
    mods = modules(root)
    known = set(mods)
    table = reexports(mods)
    return {name: [i for i in imports(name, path, known, table) if i[0] != name] for name, path in mods.items()}


def edges(g: dict) -> dict[str, set[str]]:
    """Module -> imported modules. A package depends on the submodules its ``__init__`` imports, so
    a module that imports the package itself sits above all of them."""
    return {src: {t for t, _, _ in targets} for src, targets in g.items()}


def cycle(e: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    for start in sorted(e):
        if start in state:
            continue
        stack = [(start, iter(sorted(e[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and nxt in e:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(e[nxt]))))
    return None


def depths(e: dict[str, set[str]]) -> dict[str, int]:
    """Longest import chain below each module (0: imports no regnet module)."""
    memo: dict[str, int] = {}

    def depth(m: str) -> int:
        if m not in memo:
            memo[m] = 0
            memo[m] = 1 + max((depth(t) for t in e.get(m, ()) if t in e), default=-1)
        return memo[m]

    return {m: depth(m) for m in e}


BEGIN, END = "<!-- imports:begin (tools/imports.py --update) -->", "<!-- imports:end -->"


def render(e: dict[str, set[str]] | None = None) -> str:
    """The graph as docs/design.md shows it: modules by depth (0 imports no regnet module), each
    with the regnet modules it imports (a package: the submodules its ``__init__`` imports)."""
    e = edges(graph()) if e is None else e
    shown = e
    d = depths(shown)
    short = lambda m: m.removeprefix(PACKAGE + ".") or PACKAGE
    lines = ["```", "depth  module  <-  the regnet modules it imports"]
    for level in range(max(d.values()) + 1):
        for m in sorted(x for x, v in d.items() if v == level):
            deps = ", ".join(sorted(short(t) for t in shown[m] if t in shown))
            lines.append(f"{level:>5}  {short(m)}" + (f"  <-  {deps}" if deps else ""))
    lines.append("```")
    return "\n".join(lines)


def update(path: Path) -> bool:
    """Rewrite the generated block of ``path``; True if it changed."""
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = f"{head}{BEGIN}\n{render()}\n{END}{tail}"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def block(path: Path) -> str:
    """The generated block as it stands in ``path``."""
    text = path.read_text(encoding="utf-8")
    return text.partition(BEGIN)[2].partition(END)[0].strip("\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dot", action="store_true")
    p.add_argument("--layers", action="store_true")
    p.add_argument("--update", type=Path, metavar="DOC", help="rewrite the generated block of DOC")
    args = p.parse_args(argv)
    if args.update:
        print(f"{args.update}: {'updated' if update(args.update) else 'already current'}")
        return 0
    e = edges(graph())
    if args.dot:
        print("digraph regnet {\n  rankdir=BT; node [shape=box, fontsize=10];")
        for src in sorted(e):
            for dst in sorted(e[src]):
                print(f'  "{src}" -> "{dst}";')
        print("}")
    elif args.layers:
        d = depths(e)
        for level in range(max(d.values()) + 1):
            names = sorted(m.removeprefix(PACKAGE + ".") for m, v in d.items() if v == level)
            print(f"{level:>2}  {', '.join(names)}")
    else:
        for src in sorted(e):
            print(f"{src} -> {', '.join(sorted(e[src])) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
