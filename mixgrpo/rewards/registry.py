"""Rewards by name, with weights: ``"hpsv2.1:1,pickscore:1,shapes:0.5"``.

Each reward class registers a factory under its name. :func:`load_rewards` parses a spec, builds
each reward once per process (cached by name and options) and returns ``(reward, weight)`` pairs.
"""

from __future__ import annotations

from typing import Callable

from ..errors import MixGRPOError

_FACTORIES: dict[str, Callable] = {}
_CACHE: dict[tuple, object] = {}


class RewardSpecError(MixGRPOError, ValueError):
    """A reward list that cannot be read, or a reward name nobody registered."""


def register(name: str):
    """Class decorator: make the reward constructible by ``name``."""
    def wrap(cls):
        _FACTORIES[name] = cls
        return cls
    return wrap


def available_rewards() -> list[str]:
    _import_builtin()
    return sorted(_FACTORIES)


def parse_reward_spec(spec: str) -> list[tuple[str, float]]:
    """``"a:1,b:0.5,c"`` → ``[("a", 1.0), ("b", 0.5), ("c", 1.0)]``; weights must be finite and ≥ 0."""
    pairs = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise RewardSpecError(f"reward weight {weight!r} in {part!r} is not a number; write name:weight, "
                                  "e.g. 'hpsv2.1:1,shapes:0.5'.") from None
        if not value >= 0 or value == float("inf"):
            raise RewardSpecError(f"reward weight of {name!r} must be finite and ≥ 0, got {weight}.")
        pairs.append((name.strip(), value))
    if not pairs:
        raise RewardSpecError(f"no reward named in {spec!r}; e.g. --reward shapes or --reward hpsv2.1:1,pickscore:1.")
    return pairs


def get_reward(name: str, **options):
    """The reward ``name`` built with ``options`` (cached: a model loads once per process)."""
    _import_builtin()
    if name not in _FACTORIES:
        raise RewardSpecError(f"unknown reward {name!r}; available: {', '.join(sorted(_FACTORIES))}.")
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in _CACHE:
        _CACHE[key] = _FACTORIES[name](**options)
    return _CACHE[key]


def load_rewards(spec: str, **options) -> list[tuple[object, float]]:
    """Parse ``spec`` and build every reward in it; ``options`` go to each reward's constructor."""
    return [(get_reward(name, **options), weight) for name, weight in parse_reward_spec(spec)]


def _import_builtin() -> None:
    from . import clip_scores, hps, http, image_reward, shapes  # noqa: F401  (registration side effects)
