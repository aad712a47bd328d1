"""No import circle between the modules of `core` (issue 19).

The graph is grimp's (import-linter's own), which counts imports inside functions as well as those
at the top of a module. They count here too: a lazy import that closes a circle still means two
modules that need each other, only hidden from the reader and postponed to the first call, which
is how the circle inference -> trainer -> sample -> inference went unnoticed. A circle through a
package's __init__ counts like any other.
"""

import grimp

def strongly_connected_components(graph) -> list[set[str]]:
    """The components of the import graph with more than one module (Tarjan, iteratively)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def circle_through(graph, component: set[str]) -> list[str]:
    """One circle inside a component, as the chain of modules that import each other."""
    start = min(component)
    for nxt in sorted(graph.find_modules_directly_imported_by(start) & component):
        back = graph.find_shortest_chain(importer=nxt, imported=start)
        if back:
            return [start, *back]
    return sorted(component)


def describe(graph, component: set[str]) -> str:
    chain = circle_through(graph, component)
    lines = []
    for importer, imported in zip(chain, chain[1:]):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details[:2])
        lines.append(f"  {importer} -> {imported} ({where})")
    return " -> ".join(chain) + "\n" + "\n".join(lines)


def test_core_has_no_import_circle():
    graph = grimp.build_graph("core", include_external_packages=False)
    components = strongly_connected_components(graph)
    assert not components, "import circles in core:\n" + "\n".join(describe(graph, c) for c in components)


def test_the_circle_finder_finds_a_circle_and_names_its_chain():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b", line_number=3, line_contents="import pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c", line_number=4, line_contents="import pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a", line_number=9, line_contents="from pkg import a")
    graph.add_import(importer="pkg.d", imported="pkg.a", line_number=1, line_contents="import pkg.a")
    components = strongly_connected_components(graph)
    assert components == [{"pkg.a", "pkg.b", "pkg.c"}]
    text = describe(graph, components[0])
    assert text.startswith("pkg.a -> pkg.b -> pkg.c -> pkg.a") and "line 9: from pkg import a" in text
