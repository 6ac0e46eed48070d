"""The sources a model separates, as ``--sources`` writes them: plain stems and derived sums.

``vocals,accompaniment=drums+bass+other`` names two sources: ``vocals``, read from each track's
``vocals`` stem, and ``accompaniment``, the sum of the same track's ``drums``, ``bass`` and
``other`` stems (sample by sample, before any augmentation: a derived source is one stem to the
sampler). A MUSDB user gets a karaoke model without writing new stems.

Choices, where nothing in the references says (openunmix and the X-UMX codes take a fixed list
of stem names):

* a stem is used at most once over all sources (a plain name or a part of one recipe): the
  sources then sum to the sum of the stems they use, so a mixture of them is a real mix, and no
  stem is counted twice;
* a name, plain or derived, is a file name stem (letters, digits, ``_``, ``-``, ``.``; not
  starting with ``.`` or ``-``) and not ``mixture`` (the mixture file of a track);
* 2 to 8 sources on the command line (:data:`MIN_SOURCES`, :data:`MAX_SOURCES`, checked by
  :func:`parse_sources` only: a list built in code may hold one): one source is no
  separation, and the Combination Loss over 2^J - 2 subsets grows too fast beyond 8.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cumx_cli.engine.errors import ConfigError

#: Fewest and most sources a model may separate.
MIN_SOURCES, MAX_SOURCES = 2, 8
#: The reserved stem name of a track's mixture file.
MIXTURE = "mixture"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

#: The recipe of each derived source: ``(name, (stem, ...))`` pairs, in source order.
Recipes = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class SourceList:
    """Source names in model order, and the stems each derived one sums.

    ``names`` are what the model separates (``ModelConfig.sources``); ``derived`` holds a recipe
    for each name that is a sum of stems, and no entry for a name read from its own stem.
    """

    names: tuple[str, ...]
    derived: Recipes = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "derived", normalise_recipes(self.derived))
        check_sources(self.names, self.derived)

    def recipe(self, name: str) -> tuple[str, ...]:
        """The stems that make source ``name``: its recipe, or ``(name,)`` for a plain one."""
        return dict(self.derived).get(name, (name,))

    @property
    def stems(self) -> tuple[str, ...]:
        """Every stem a track must provide, in source order (each once)."""
        return tuple(stem for name in self.names for stem in self.recipe(name))

    def to_text(self) -> str:
        """The ``--sources`` text that :func:`parse_sources` reads back into this list."""
        recipes = dict(self.derived)
        return ",".join(f"{n}={'+'.join(recipes[n])}" if n in recipes else n for n in self.names)


def normalise_recipes(recipes: Mapping[str, Sequence[str]] | Iterable[Sequence[object]]
                      ) -> Recipes:
    """``recipes`` as :data:`Recipes`: from a mapping (a config file's ``{name: [stems]}``) or
    from pairs. Only the shape is checked here (:func:`check_sources` checks the names).

    Raises:
        ConfigError: not a mapping of names to lists of names (``field="sources"``).
    """
    items = list(recipes.items()) if isinstance(recipes, Mapping) else list(recipes)
    result = []
    for item in items:
        if len(item) != 2 or not isinstance(item[0], str) or isinstance(item[1], str) \
                or not all(isinstance(part, str) for part in item[1]):  # type: ignore[union-attr]
            raise ConfigError(f"sources recipes must map names to lists of stem names, got "
                              f"{item!r}", field="sources")
        result.append((item[0], tuple(item[1])))  # type: ignore[arg-type]
    return tuple(result)


def check_sources(names: Sequence[str], derived: Recipes = ()) -> None:
    """Check names and recipes by the rules of the module docstring.

    Raises:
        ConfigError: naming the bad item (``field="sources"``, so the command line shows
            ``--sources``).
    """
    if not names:
        raise ConfigError("sources must be distinct and non-empty, got ()", field="sources")
    twice = [n for i, n in enumerate(names) if n in names[:i]]
    if twice:
        raise ConfigError(f"sources must be distinct and non-empty: {twice[0]!r} is given twice",
                          field="sources")
    recipes = dict(derived)
    if len(recipes) != len(derived):
        raise ConfigError("sources recipes name a source twice", field="sources")
    stray = [n for n in recipes if n not in names]
    if stray:
        raise ConfigError(f"sources recipe for {stray[0]!r}, which is not one of the sources "
                          f"({', '.join(names)})", field="sources")
    used: dict[str, str] = {}
    for name in names:
        _check_name(name, name)
        parts = recipes.get(name, (name,))
        if not parts:
            raise ConfigError(f"sources item {name!r}: '=' needs stems after it, as "
                              f"{name}=a+b", field="sources")
        for part in parts:
            _check_name(part, f"{name}={'+'.join(parts)}")
            if part in used:
                where = "twice" if used[part] == name else f"in {used[part]!r} and {name!r}"
                raise ConfigError(f"sources item {_item(name, recipes)!r}: stem {part!r} is "
                                  f"used {where}; each stem may make one source only",
                                  field="sources")
            used[part] = name


def _item(name: str, recipes: Mapping[str, tuple[str, ...]]) -> str:
    return f"{name}={'+'.join(recipes[name])}" if name in recipes else name


def _check_name(name: str, item: str) -> None:
    if name == MIXTURE:
        raise ConfigError(f"sources item {item!r}: 'mixture' is the name of a track's mixture "
                          "file, not a source", field="sources")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"sources item {item!r}: {name!r} is not a valid name (letters, "
                          "digits, '_', '-', '.'; not starting with '.' or '-')",
                          field="sources")


def parse_sources(text: str) -> SourceList:
    """``--sources`` text: comma-separated items, each ``name`` or ``name=stem+stem+...``.

    Spaces around items, names and ``+`` are ignored; empty items (a trailing comma) are
    skipped.

    Raises:
        ConfigError: an item that is not a valid name or recipe, a name given twice, a stem used
            by two sources, or fewer than 2 or more than 8 sources; the message starts with
            ``sources`` and quotes the bad item.
    """
    names: list[str] = []
    derived: list[tuple[str, tuple[str, ...]]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if "=" in item:
            name, _, recipe = (s.strip() for s in item.partition("="))
            parts = tuple(p.strip() for p in recipe.split("+"))
            if not name or not recipe or "=" in recipe or not all(parts):
                raise ConfigError(f"sources item {item!r}: expected NAME=stem+stem+..., as "
                                  "accompaniment=drums+bass+other", field="sources")
            derived.append((name, parts))
            names.append(name)
        else:
            names.append(item)
    if not MIN_SOURCES <= len(names) <= MAX_SOURCES:
        raise ConfigError(f"sources must name {MIN_SOURCES} to {MAX_SOURCES} sources, got "
                          f"{len(names)} ({', '.join(names)})", field="sources")
    return SourceList(tuple(names), tuple(derived))
