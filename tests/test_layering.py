"""The layers import only downwards (README "Layout"), read from the sources: the modules a
module loads when it is imported, followed transitively through the package, and for the
strict rules also what its functions import when called (models/io.py may read .pth files
through convert on demand; nothing may reach train from inference or export from train)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'action_jax'

# (modules, by name prefix) -> packages they must never load at import time.
RULES = [
    (('action_jax.apis', 'action_jax.demo', 'action_jax.export'), ('action_jax.train',)),
    (('action_jax.train',), ('action_jax.export',)),
    (('action_jax.data',), ('action_jax.localization', 'action_jax.models',
                            'action_jax.train', 'action_jax.export')),
    (('action_jax.models',), ('action_jax.train', 'action_jax.convert', 'action_jax.export')),
    (('action_jax.evaluation', 'action_jax.localization'), ('action_jax.train',
                                                            'action_jax.export')),
    (('action_jax.config', 'action_jax.registry'), ('action_jax.',)),
]
# Function-level imports included (not transitive).
STRICT_RULES = [
    (('action_jax.apis', 'action_jax.demo', 'action_jax.export'), ('action_jax.train',)),
    (('action_jax.train',), ('action_jax.export',)),
    (('action_jax.data',), ('action_jax.localization',)),
    (('action_jax.models',), ('action_jax.train',)),
]


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob('*.py')}


def _with_parents(name: str) -> set[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = name.split('.')
    return {'.'.join(parts[:i]) for i in range(1, len(parts) + 1)} & MODULES.keys()


def _imports(name: str, nested: bool = False) -> set[str]:
    """action_jax modules imported by the module's body outside functions (`nested`: and
    inside them)."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    package = name if MODULES[name].name == '__init__.py' else name.rpartition('.')[0]
    nodes = list(tree.body)
    while nodes:
        node = nodes.pop()
        if not nested and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found |= {f'{base}.{alias.name}' for alias in node.names}
        nodes.extend(ast.iter_child_nodes(node))
    return {m for imported in found for m in _with_parents(imported)} - {name}


def _loaded_by(name: str) -> set[str]:
    seen, todo = set(), list(_with_parents(name))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module))
    return seen - {name}


def test_the_scan_sees_imports():
    """The scan itself: apis loads models (allowed), and a function-level import does not
    count (models/io.py reads .pth files through convert only when asked)."""
    assert 'action_jax.models.io' in _loaded_by('action_jax.apis')
    assert not any(m.startswith('action_jax.convert') for m in _loaded_by('action_jax.models.io'))
    assert 'action_jax.models.preprocessor' in _loaded_by('action_jax.export.deployed')


@pytest.mark.parametrize('prefixes, forbidden', RULES,
                         ids=[','.join(p) for p, _ in RULES])
def test_layers_import_only_downwards(prefixes, forbidden):
    modules = [m for m in MODULES if m.startswith(prefixes)]
    assert modules, prefixes
    violations = {m: sorted(dep for dep in _loaded_by(m) if dep.startswith(forbidden))
                  for m in modules}
    assert not {m: deps for m, deps in violations.items() if deps}


@pytest.mark.parametrize('prefixes, forbidden', STRICT_RULES,
                         ids=[','.join(p) for p, _ in STRICT_RULES])
def test_no_lazy_import_crosses_a_layer(prefixes, forbidden):
    violations = {m: sorted(dep for dep in _imports(m, nested=True) if dep.startswith(forbidden))
                  for m in MODULES if m.startswith(prefixes)}
    assert not {m: deps for m, deps in violations.items() if deps}
