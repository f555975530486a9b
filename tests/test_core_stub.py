"""The hand-written stub ``ferrograd/_core.pyi`` against the built extension: the same
functions, each with PyO3's parameter names, order, kinds and defaults, and annotations
that only use names the stub defines or imports. Needs no GPU and no torch."""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest


def _stub_path() -> Path:
    # the stub next to the package that is imported (installed or editable), else the repo's
    spec = importlib.util.find_spec("ferrograd")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "_core.pyi"
            if p.exists():
                return p
    return Path(__file__).resolve().parents[1] / "python" / "ferrograd" / "_core.pyi"


STUB = _stub_path()
TREE = ast.parse(STUB.read_text(), filename=str(STUB))


def _stub_functions() -> dict[str, list[ast.FunctionDef]]:
    """Module-level defs by name (an overloaded function has several)."""
    out: dict[str, list[ast.FunctionDef]] = {}
    for node in TREE.body:
        assert not isinstance(node, ast.AsyncFunctionDef), f"{node.name}: PyO3 functions are not async"
        if isinstance(node, ast.FunctionDef):
            out.setdefault(node.name, []).append(node)
    return out


FUNCS = _stub_functions()
# attributes every module has, not declared by a stub
MODULE_DUNDERS = {"__name__", "__doc__", "__file__", "__loader__", "__package__", "__spec__",
                  "__path__", "__builtins__", "__cached__", "__all__"}


@pytest.fixture(scope="module")
def core():
    return pytest.importorskip(
        "ferrograd._core", reason="the Rust extension is not built (run `maturin develop --release`)")


def _is_type_alias(node: ast.AnnAssign) -> bool:
    a = node.annotation
    return (isinstance(a, ast.Name) and a.id == "TypeAlias") or (
        isinstance(a, ast.Attribute) and a.attr == "TypeAlias")


def test_stub_lists_exactly_the_extensions_functions(core):
    real = {n for n in dir(core) if not n.startswith("__") and callable(getattr(core, n))}
    stub = set(FUNCS)
    assert not real - stub, f"{STUB.name} lacks functions of ferrograd._core: {sorted(real - stub)}"
    assert not stub - real, f"{STUB.name} declares functions ferrograd._core does not have: {sorted(stub - real)}"


def test_stub_declares_the_module_constants(core):
    real = {n for n in dir(core) if n not in MODULE_DUNDERS and not callable(getattr(core, n))}
    stub = {node.target.id for node in TREE.body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and not _is_type_alias(node)}
    assert real == stub, f"module constants: ferrograd._core has {sorted(real)}, {STUB.name} declares {sorted(stub)}"


def _stub_params(fn: ast.FunctionDef) -> list[tuple[str, inspect._ParameterKind, ast.expr | None]]:
    """(name, kind, default expression or None) in order, as inspect would report them."""
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    P = inspect.Parameter
    out: list[tuple[str, inspect._ParameterKind, ast.expr | None]] = [
        (p.arg, P.POSITIONAL_ONLY if i < len(a.posonlyargs) else P.POSITIONAL_OR_KEYWORD, d)
        for i, (p, d) in enumerate(zip(positional, defaults))]
    if a.vararg:
        out.append((a.vararg.arg, P.VAR_POSITIONAL, None))
    out += [(p.arg, P.KEYWORD_ONLY, d) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        out.append((a.kwarg.arg, P.VAR_KEYWORD, None))
    return out


def _signature_mismatches(name: str, fn: ast.FunctionDef, real) -> list[str]:
    """What differs between one stub def and the real function's PyO3 signature."""
    try:
        sig = inspect.signature(real)
    except ValueError:
        return [f"{name}: PyO3 gives no text signature to compare with"]
    want = list(sig.parameters.values())
    got = _stub_params(fn)
    line = f"{name} (stub line {fn.lineno})"
    if [p.name for p in want] != [g[0] for g in got]:
        return [f"{line}: parameters {[g[0] for g in got]} in the stub, {[p.name for p in want]} in PyO3 "
                f"{sig}"]
    problems = []
    for p, (_, kind, default) in zip(want, got):
        if p.kind != kind:
            problems.append(f"{line}: {p.name} is {kind.description} in the stub, {p.kind.description} in PyO3")
        has_default = p.default is not inspect.Parameter.empty
        if has_default != (default is not None):
            problems.append(f"{line}: {p.name} {'has no' if has_default else 'has a'} default in the stub, "
                            f"PyO3 gives {'=' + repr(p.default) if has_default else 'none'}")
        elif default is not None and p.default is not Ellipsis:
            # PyO3 writes `...` for a default it cannot show; any other value must match
            try:
                stub_value = ast.literal_eval(default)
            except ValueError:
                stub_value = f"<not a literal: {ast.unparse(default)}>"
            if stub_value is Ellipsis or stub_value != p.default or type(stub_value) is not type(p.default):
                problems.append(f"{line}: {p.name} defaults to {ast.unparse(default)} in the stub, "
                                f"{p.default!r} in PyO3")
    return problems


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_stub_signature_matches_pyo3(core, name):
    if not hasattr(core, name):
        pytest.fail(f"{name}: in the stub but not in ferrograd._core")
    problems = [m for fn in FUNCS[name] for m in _signature_mismatches(name, fn, getattr(core, name))]
    assert not problems, "\n".join(problems)


def test_overloads_are_marked_and_only_where_needed():
    for name, defs in FUNCS.items():
        marked = [any(ast.unparse(d) in ("overload", "typing.overload") for d in fn.decorator_list) for fn in defs]
        if len(defs) > 1:
            assert all(marked), f"{name}: defined {len(defs)} times, but not every def is an @overload"
        else:
            assert not any(marked), f"{name}: a single @overload (an overload needs at least two)"


def test_every_function_has_a_one_line_docstring():
    for name, defs in FUNCS.items():
        doc = ast.get_docstring(defs[0])
        assert doc, f"{name}: no docstring in the stub"
        assert "\n" not in doc.strip(), f"{name}: docstring is more than one line"


def _defined_names() -> dict[str, object | None]:
    """Names the stub binds at module level: imports (to the imported object, so that
    attributes on them can be checked) and its own aliases, TypeVars and functions (None)."""
    names: dict[str, object | None] = {}
    for node in TREE.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = importlib.import_module(a.name)
                else:
                    top = a.name.split(".")[0]
                    names[top] = importlib.import_module(top)
        elif isinstance(node, ast.ImportFrom):
            mod = importlib.import_module(node.module or "")
            for a in node.names:
                assert a.name != "*", "the stub should not star-import"
                assert hasattr(mod, a.name), f"stub imports {a.name} from {node.module}, which has no such name"
                names[a.asname or a.name] = getattr(mod, a.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names[t.id] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = None
    return names


def _annotations():
    """(where, expression) of every annotation in the stub, aliases' values included."""
    for node in TREE.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            for p in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
                if p.annotation is not None:
                    yield f"{node.name}({p.arg})", p.annotation
            if node.returns is not None:
                yield f"{node.name} return", node.returns
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id, node.annotation
            if node.value is not None and _is_type_alias(node):
                yield f"{node.target.id} alias", node.value
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            # TypeVar("_F", np.float32, ...): the constraints are types too
            for arg in node.value.args[1:]:
                yield f"{ast.unparse(node.targets[0])} constraint", arg


def _name_problems(where: str, expr: ast.AST, names: dict[str, object | None]) -> list[str]:
    """Names in expr that the stub does not bind (or builtins), and dotted names on an
    imported module that do not resolve (np.float23)."""
    if isinstance(expr, ast.Subscript) and ast.unparse(expr.value) in ("Literal", "typing.Literal"):
        return []  # Literal["tanh", ...]: values, not names
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        # a quoted annotation: check what it names
        return _name_problems(where, ast.parse(expr.value, mode="eval").body, names)
    if isinstance(expr, ast.Name):
        if expr.id in names or hasattr(builtins, expr.id):
            return []
        return [f"{where}: {expr.id} is neither imported nor defined in the stub"]
    if isinstance(expr, ast.Attribute):
        chain: list[str] = []
        root: ast.expr = expr
        while isinstance(root, ast.Attribute):
            chain.append(root.attr)
            root = root.value
        problems = _name_problems(where, root, names)
        obj = names.get(root.id) if isinstance(root, ast.Name) else None
        if obj is not None:
            for attr in reversed(chain):
                if not hasattr(obj, attr):
                    return problems + [f"{where}: {ast.unparse(expr)} does not exist"]
                obj = getattr(obj, attr)
        return problems
    return [m for child in ast.iter_child_nodes(expr) for m in _name_problems(where, child, names)]


def test_annotations_use_only_names_the_stub_imports_or_defines():
    names = _defined_names()
    problems = [m for where, expr in _annotations() for m in _name_problems(where, expr, names)]
    assert not problems, "\n".join(problems)
