"""The package's folders are its layers, and imports only go down (function-level imports included)."""
import ast
import os

import dante_nnunet

ROOT = os.path.dirname(dante_nnunet.__file__)
# bottom to top; a module may import from its own layer and those below
LAYERS = [
    {"config", "guards", "trainer_names"},
    {"networks", "losses"},
    {"data"},
    {"deploy"},
    {"training"},
    {"jobs"},
    {"benchmark"},
    {"cli", "nnunet_trainers"},
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_every_module_belongs_to_a_layer():
    for entry in os.listdir(ROOT):
        name = entry[:-3] if entry.endswith(".py") else entry
        if entry.startswith(("_", ".")) or not (entry.endswith(".py") or os.path.isdir(os.path.join(ROOT, entry))):
            continue
        assert name in LEVEL, f"dante_nnunet/{entry} is in no layer of tests/test_layers.py"


def test_imports_only_go_down():
    upward = []
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            rel = os.path.relpath(path, ROOT)
            own = rel.split(os.sep)[0].removesuffix(".py")
            if own == "__init__":
                continue
            for node in ast.walk(ast.parse(open(path).read())):
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for n in names:
                    if n.startswith("dante_nnunet.") and LEVEL[_part(n)] > LEVEL[own]:
                        upward.append(f"{rel}:{node.lineno} imports {n}")
    assert not upward, "\n".join(upward)
