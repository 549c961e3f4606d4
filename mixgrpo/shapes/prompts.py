"""Structured prompt specs of the shapes world, their canonical text, and the parser back.

Grammar (lower case; a trailing full stop and repeated spaces are ignored)::

    prompt   := group
              | group " and " group
              | group " " relation " " group          (subject relation reference)
    group    := count [" " colour] " " shape[s] [" " position]
    count    := "a" | "an" | "one" | "two" | "three"
    colour   := red | green | blue | yellow | purple | orange
    shape    := circle | square | triangle            (plural "s" optional, accepted either way)
    position := "on the left" | "on the right" | "at the top" | "at the bottom" | "in the centre"
                ("center" and "in the middle" are accepted too)
    relation := "above" | "below" | "to the left of" | "to the right of" | "left of" | "right of"

At most :data:`~mixgrpo.shapes.world.MAX_OBJECTS` (3) instances in all. :func:`prompt_text` writes
the canonical form, so ``parse_prompt(prompt_text(spec)) == spec`` for every spec, and the category
of a spec follows from its structure (:attr:`PromptSpec.category`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..errors import PromptError
from .world import (
    COLOURS,
    COUNT_WORDS,
    MAX_OBJECTS,
    POSITION_PHRASES,
    RELATION_PHRASES,
    SHAPES,
)


@dataclass(frozen=True)
class ObjectSpec:
    """One group of identical objects: ``count`` × shape, in ``colour`` (None: any palette colour),
    at an absolute ``position`` (None: anywhere)."""

    shape: str
    colour: str | None = None
    count: int = 1
    position: str | None = None


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for: one or two object groups and, optionally, a relation
    ``objects[0] <relation> objects[1]`` (e.g. ``"above"``: subject above reference)."""

    objects: tuple[ObjectSpec, ...]
    relation: str | None = None

    @property
    def category(self) -> str:
        """GenEval-like category, read off the structure (see :data:`~mixgrpo.shapes.world.CATEGORIES`)."""
        if self.relation is not None:
            return "relation"
        if len(self.objects) >= 2:
            return "colour_attribution" if all(o.colour for o in self.objects) else "two_objects"
        only = self.objects[0]
        if only.count > 1:
            return "counting"
        if only.position is not None:
            return "position"
        return "colour" if only.colour is not None else "single_object"

    @property
    def num_instances(self) -> int:
        return sum(o.count for o in self.objects)

    @property
    def text(self) -> str:
        return prompt_text(self)


def object_text(obj: ObjectSpec) -> str:
    """Canonical words of one group: ``"two red circles on the left"``, ``"an orange square"``."""
    noun = ([obj.colour] if obj.colour is not None else []) + [obj.shape + ("s" if obj.count > 1 else "")]
    article = COUNT_WORDS[obj.count]
    words = ["an" if article == "a" and noun[0][0] in "aeiou" else article] + noun
    if obj.position is not None:
        words.append(POSITION_PHRASES[obj.position])
    return " ".join(words)


def prompt_text(spec: PromptSpec) -> str:
    """Canonical prompt text of ``spec`` (the inverse of :func:`parse_prompt`)."""
    validate_spec(spec)
    parts = [object_text(o) for o in spec.objects]
    if spec.relation is not None:
        return f"{parts[0]} {RELATION_PHRASES[spec.relation]} {parts[1]}"
    return " and ".join(parts)


def validate_spec(spec: PromptSpec) -> PromptSpec:
    """Raise :class:`PromptError` unless every field of ``spec`` belongs to the world's vocabulary."""
    if not 1 <= len(spec.objects) <= 2:
        raise PromptError(f"a shapes prompt has 1 or 2 object groups, found {len(spec.objects)}")
    for o in spec.objects:
        if o.shape not in SHAPES:
            raise PromptError(f"unknown shape {o.shape!r}: expected one of {', '.join(SHAPES)}")
        if o.colour is not None and o.colour not in COLOURS:
            raise PromptError(f"unknown colour {o.colour!r}: expected one of {', '.join(COLOURS)} or None")
        if o.count not in COUNT_WORDS:
            raise PromptError(f"count {o.count} is not supported: expected 1, 2 or 3")
        if o.position is not None and o.position not in POSITION_PHRASES:
            raise PromptError(f"unknown position {o.position!r}: expected one of {', '.join(POSITION_PHRASES)}")
    if spec.relation is not None:
        if spec.relation not in RELATION_PHRASES:
            raise PromptError(f"unknown relation {spec.relation!r}: expected one of {', '.join(RELATION_PHRASES)}")
        if len(spec.objects) != 2:
            raise PromptError("a relation needs exactly two object groups (subject and reference)")
    if spec.num_instances > MAX_OBJECTS:
        raise PromptError(f"a shapes prompt asks for at most {MAX_OBJECTS} objects, found {spec.num_instances}")
    return spec


# -- parsing -------------------------------------------------------------------------------------

_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}
_POSITION_WORDS = {phrase: name for name, phrase in POSITION_PHRASES.items()}
_POSITION_WORDS.update({"in the center": "centre", "in the middle": "centre"})
_RELATION_WORDS = {"above": "above", "below": "below", "to the left of": "left_of",
                   "to the right of": "right_of", "left of": "left_of", "right of": "right_of"}


def _alternatives(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_GROUP_RE = re.compile(
    rf"^(?P<count>{_alternatives(_COUNTS)}) (?:(?P<colour>{_alternatives(COLOURS)}) )?"
    rf"(?P<shape>{_alternatives(SHAPES)})s?(?: (?P<position>{_alternatives(_POSITION_WORDS)}))?$")
_RELATION_RE = re.compile(rf"^(?P<subject>.+?) (?P<relation>{_alternatives(_RELATION_WORDS)}) (?P<reference>.+)$")

EXPECTED = (
    "expected '<count> [<colour>] <shape> [<position>]', optionally joined to a second such group by "
    "'and' or by a relation; counts: a, one, two, three; colours: " + ", ".join(COLOURS)
    + "; shapes: " + ", ".join(SHAPES) + "; positions: " + ", ".join(POSITION_PHRASES.values())
    + "; relations: " + ", ".join(RELATION_PHRASES.values())
    + " (e.g. 'a red circle', 'two squares', 'a yellow triangle above a blue circle')"
)


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace(",", " ").split()).rstrip(".").strip()


def _parse_group(words: str, whole: str) -> ObjectSpec:
    m = _GROUP_RE.match(words)
    if m is None:
        known = set(_COUNTS) | set(COLOURS) | set(SHAPES) | {s + "s" for s in SHAPES} | {"and"}
        known |= {w for phrase in list(_POSITION_WORDS) + list(_RELATION_WORDS) for w in phrase.split()}
        unknown = [w for w in words.split() if w not in known]
        hint = f" (unknown words: {', '.join(map(repr, unknown))})" if unknown else ""
        raise PromptError(f"cannot parse {words!r} in shapes prompt {whole!r}{hint}: {EXPECTED}")
    position = m["position"]
    return ObjectSpec(shape=m["shape"], colour=m["colour"], count=_COUNTS[m["count"]],
                      position=_POSITION_WORDS[position] if position else None)


def parse_prompt(text: str) -> PromptSpec:
    """Turn prompt text into its :class:`PromptSpec`; :class:`PromptError` says what was expected.

    Cached: a GRPO batch repeats each prompt group-size times.
    """
    if not isinstance(text, str):
        raise PromptError(f"a shapes prompt must be a string, found {type(text).__name__}")
    return _parse_cached(text)


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> PromptSpec:
    norm = _normalise(text)
    if not norm:
        raise PromptError(f"empty shapes prompt {text!r}: {EXPECTED}")
    relation = None
    m = _RELATION_RE.match(norm)
    if m is not None:
        relation = _RELATION_WORDS[m["relation"]]
        groups = [m["subject"], m["reference"]]
    else:
        groups = norm.split(" and ")
    if len(groups) > 2:
        raise PromptError(f"shapes prompt {text!r} names {len(groups)} object groups, "
                          f"at most 2 are supported: {EXPECTED}")
    spec = PromptSpec(objects=tuple(_parse_group(g, text) for g in groups), relation=relation)
    return validate_spec(spec)
