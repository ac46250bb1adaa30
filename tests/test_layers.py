"""The layering ARCHITECTURE.md describes, enforced on every import statement (module level or
inside functions) of the installed package's source."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where each subpackage of `reasoning` lives in the repository.
FOLDERS = {"reasoning": ROOT / "reasoning", "reasoning.strategies": ROOT / "strategies",
           "reasoning.verifiers": ROOT / "verifiers", "reasoning.benchmarks": ROOT / "benchmarks",
           "reasoning.prompts": ROOT / "prompts"}
APPLICATION = {"reasoning.benchmarks", "reasoning.serve"}
PLUGINS = {"reasoning.strategies", "reasoning.verifiers"}
# layer -> the layers it may not import
FORBIDDEN = {
    "core": PLUGINS | APPLICATION | {"reasoning.backends"},
    "reasoning.backends": PLUGINS | APPLICATION,
    "reasoning.verifiers": {"reasoning.strategies"} | APPLICATION,
    "reasoning.strategies": APPLICATION,
    "reasoning.prompts": PLUGINS | APPLICATION | {"reasoning.backends"},
}


def layer(module: str) -> str:
    if module == "reasoning.backends.base" or module.startswith("reasoning.backends.base."):
        return "core"  # the backend protocol is part of the core; the backends themselves are plugins
    for name in ("reasoning.strategies", "reasoning.verifiers", "reasoning.benchmarks", "reasoning.prompts",
                 "reasoning.serve", "reasoning.backends"):
        if module == name or module.startswith(name + "."):
            return name
    return "core"


def modules():
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            yield ".".join([package, *parts]), path


def imports(module: str, path: Path):
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def test_layers_import_only_downwards():
    broken = []
    for module, path in modules():
        if module == "reasoning":  # the facade re-exports plugins lazily, by name
            continue
        mine = layer(module)
        for target in imports(module, path):
            if target.startswith("reasoning") and layer(target) in FORBIDDEN.get(mine, ()) and layer(target) != mine:
                broken.append(f"{module} ({mine}) imports {target} ({layer(target)})")
    assert broken == []


def test_the_layer_check_sees_a_violation():
    # The checker itself must be able to fail: a core module importing a strategy is caught.
    fake = ROOT / "reasoning" / "solve.py"
    tree_imports = set(imports("reasoning.solve", fake))
    assert any(t.startswith("reasoning.answers") for t in tree_imports)
    assert layer("reasoning.strategies.greedy") in FORBIDDEN["core"]
    assert layer("reasoning.serve.app") in FORBIDDEN["reasoning.strategies"]
