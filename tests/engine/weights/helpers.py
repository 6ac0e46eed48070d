"""Plain helpers of the weights tests: what a cache folder holds.

Every failure must end in a typed one-line error or a verified file, never a cache entry that is
not verified: each failure test checks the cache holds no weights file and no ``.sha256``.
"""

from __future__ import annotations

from pathlib import Path


def cache_tree(root: Path) -> list[str]:
    """Every file and folder under the cache."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def cache_files(root: Path) -> list[str]:
    """Everything under the cache (hidden files included), as relative paths."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def assert_no_entry(root: Path) -> None:
    """No weights file and no sha256 record: a failed download leaves no cache entry."""
    leftovers = [f for f in cache_files(root) if not f.endswith(".part")]
    assert leftovers == [], leftovers
