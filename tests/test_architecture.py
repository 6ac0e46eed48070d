"""The engine is a quiet library: no CLI imports, no printing, no exiting."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "cumx_cli" / "engine"
FORBIDDEN_IMPORTS = {"typer", "click", "rich"}


def test_engine_never_imports_the_cli_or_prints() -> None:
    problems = []
    for file in sorted(ENGINE.rglob("*.py")):
        tree = ast.parse(file.read_text(), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                root = name.split(".")[0]
                if root in FORBIDDEN_IMPORTS or name.startswith(("cumx_cli.commands", "cumx_cli.console", "cumx_cli.app")):
                    problems.append(f"{file.name}: imports {name}")
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in ("print", "exit", "quit"):
                    problems.append(f"{file.name}:{node.lineno}: calls {func.id}()")
                if isinstance(func, ast.Attribute) and func.attr == "exit" and getattr(func.value, "id", "") == "sys":
                    problems.append(f"{file.name}:{node.lineno}: calls sys.exit()")
    assert not problems, problems
