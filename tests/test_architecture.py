"""The layering rules of STYLE.md §3.3, checked on the source: the engine is a quiet library (no
CLI imports, no printing, no exiting, no environment reads), training does not depend on
inference, and only ``engine/audio/`` talks to the audio codec."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cumx_cli"
ENGINE = PACKAGE / "engine"
FORBIDDEN_IMPORTS = {"typer", "click", "rich"}
CLI_MODULES = ("cumx_cli.commands", "cumx_cli.console", "cumx_cli.app", "cumx_cli.options",
               "cumx_cli.api")


@cache
def _tree(file: Path) -> ast.Module:
    return ast.parse(file.read_text(), filename=str(file))


def _where(file: Path, node: ast.AST | None = None) -> str:
    line = f":{node.lineno}" if isinstance(node, (ast.stmt, ast.expr)) else ""
    return f"{file.relative_to(PACKAGE.parent).as_posix()}{line}"


def _module_of(file: Path) -> str:
    parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(file: Path) -> Iterator[tuple[ast.AST, str]]:
    """Every module ``file`` imports, with its node."""
    return _imports_in(_tree(file), _module_of(file), file.name == "__init__.py")


def _imports_in(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[ast.AST, str]]:
    """Imported module names (relative ones made absolute; ``from X import Y`` gives both ``X``
    and ``X.Y``, since ``Y`` may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            yield node, base
            for alias in node.names:
                yield node, f"{base}.{alias.name}"


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def test_engine_never_imports_the_cli_or_prints() -> None:
    problems = []
    for file in _files(ENGINE):
        for node, name in _imports(file):
            if name.split(".")[0] in FORBIDDEN_IMPORTS or name.startswith(CLI_MODULES):
                problems.append(f"{_where(file, node)}: imports {name}")
        for node in ast.walk(_tree(file)):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in ("print", "exit", "quit"):
                    problems.append(f"{_where(file, node)}: calls {func.id}()")
                if isinstance(func, ast.Attribute) and func.attr == "exit" \
                        and getattr(func.value, "id", "") == "sys":
                    problems.append(f"{_where(file, node)}: calls sys.exit()")
    assert not problems, problems


def test_engine_never_reads_the_environment() -> None:
    """The CLI reads environment variables and passes their values in (STYLE.md §3.10 rule 2)."""
    problems: set[str] = set()
    for file in _files(ENGINE):
        for node in ast.walk(_tree(file)):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv") \
                    and getattr(node.value, "id", "") == "os":
                problems.add(f"{_where(file, node)}: reads os.{node.attr}")
        for node, name in _imports(file):
            if name in ("os.environ", "os.environb", "os.getenv"):
                problems.add(f"{_where(file, node)}: imports {name}")
    assert not problems, sorted(problems)


def test_training_does_not_import_inference() -> None:
    """Shared helpers (devices, checkpoints) live where both can import them."""
    inference = "cumx_cli.engine.inference"
    problems = {f"{_where(file, node)}: imports {inference}"
                for file in _files(ENGINE / "training") for node, name in _imports(file)
                if name == inference or name.startswith(f"{inference}.")}
    assert not problems, sorted(problems)


def test_only_the_audio_package_imports_soundfile() -> None:
    """``cumx_cli/engine/audio/`` is the one codec user (decoders are swapped there only)."""
    audio = ENGINE / "audio"
    problems = {f"{_where(file, node)}: imports soundfile"
                for file in _files(PACKAGE) if audio not in file.parents
                for node, name in _imports(file) if name.split(".")[0] == "soundfile"}
    assert not problems, sorted(problems)


def test_the_import_walker_resolves_relative_and_from_imports() -> None:
    tree = ast.parse("from ..inference import separator\nfrom . import stats\nimport soundfile as sf\n")
    names = {name for _, name in _imports_in(tree, "cumx_cli.engine.training.loop", False)}
    assert {"cumx_cli.engine.inference", "cumx_cli.engine.inference.separator",
            "cumx_cli.engine.training.stats", "soundfile"} <= names
    names = {name for _, name in _imports_in(ast.parse("from .loop import fit\n"),
                                             "cumx_cli.engine.training", True)}
    assert "cumx_cli.engine.training.loop" in names
