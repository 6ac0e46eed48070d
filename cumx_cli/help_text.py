"""How ``--help`` shows on/off flags.

typer 0.29 prints a type placeholder beside every option, flags included (``--json <bool>``,
``--help <bool>``), which reads as if the flag took a value. :func:`plain_flags` makes flags show
none, as click and the other tools of this field show them; options that take a value keep
theirs (``--chunk <float>``, ``--model <text>``).
"""

from __future__ import annotations

from typing import Any


def plain_flags() -> None:
    """Show no type placeholder for flags in rich ``--help`` (idempotent)."""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_cumx_plain_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._cumx_plain_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
