"""Rewards by name, with weights: ``"hpsv2.1:1,pickscore:1,shapes:0.5"``, and options per reward.

Each reward class registers a factory under its name. :func:`load_rewards` parses a spec, builds
each reward once per process (cached by name and options) and returns ``(reward, weight)`` pairs.

Options that belong to one reward (the judge's ``url``, a checkpoint path) travel as a mapping
``{"http": {"url": "http://127.0.0.1:8000/score", "timeout": 5}}``. On a command line each is one
``reward.option=value`` item (:func:`parse_reward_options`); the value is read as YAML, so numbers
and booleans come out typed and a URL stays a string.
"""

from __future__ import annotations

import inspect
from typing import Callable

import yaml

from ..errors import MixGRPOError
from .reward_set import RewardSet

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


def parse_reward_options(items: list[str] | tuple[str, ...]) -> dict[str, dict]:
    """``["http.url=http://h:8000/score", "hpsv2.1.checkpoint=f.pt"]`` →
    ``{"http": {"url": "http://h:8000/score"}, "hpsv2.1": {"checkpoint": "f.pt"}}``."""
    options: dict[str, dict] = {}
    for item in items:
        key, equals, value = item.partition("=")
        reward, dot, option = key.strip().rpartition(".")  # reward names may hold dots (hpsv2.1), options never
        if not equals or not dot or not reward or not option:
            raise RewardSpecError(f"reward option {item!r} must read reward.option=value, "
                                  "e.g. http.url=http://127.0.0.1:8000/score.")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        options.setdefault(reward, {})[option.strip()] = value if isinstance(parsed, (dict, list)) else parsed
    return options


def reward_option_names(name: str) -> list[str]:
    """The options the reward ``name`` takes (its factory's keyword parameters)."""
    _import_builtin()
    if name not in _FACTORIES:
        raise RewardSpecError(f"unknown reward {name!r}; available: {', '.join(sorted(_FACTORIES))}.")
    parameters = inspect.signature(_FACTORIES[name]).parameters.values()
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_reward_options(spec: str, options: dict[str, dict]) -> None:
    """Every option names a reward of ``spec`` and a parameter that reward takes."""
    named = [name for name, _ in parse_reward_spec(spec)]
    for reward, values in options.items():
        if reward not in named:
            raise RewardSpecError(f"option(s) {sorted(values)} are for reward {reward!r}, which the reward list "
                                  f"{spec!r} does not name; add it, e.g. '{spec},{reward}:1'.")
        if not isinstance(values, dict):
            raise RewardSpecError(f"options of reward {reward!r} must be a mapping of option: value, got {values!r}.")
        known = reward_option_names(reward)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise RewardSpecError(f"reward {reward!r} has no option {', '.join(map(repr, unknown))}; "
                                  f"its options: {', '.join(known)}.")


def get_reward(name: str, **options):
    """The reward ``name`` built with ``options`` (cached: a model loads once per process)."""
    _import_builtin()
    if name not in _FACTORIES:
        raise RewardSpecError(f"unknown reward {name!r}; available: {', '.join(sorted(_FACTORIES))}.")
    key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in _CACHE:
        _CACHE[key] = _FACTORIES[name](**options)
    return _CACHE[key]


def load_rewards(spec: str, options: dict[str, dict] | None = None, **common) -> RewardSet:
    """Parse ``spec`` and build every reward in it, as a :class:`RewardSet` (iterates as ``(reward, weight)``).

    ``options[name]`` go to the reward ``name`` only (checked against what it takes); ``common``
    (e.g. ``device``) go to every reward's constructor.
    """
    options = options or {}
    check_reward_options(spec, options)
    return RewardSet([(get_reward(name, **{**common, **options.get(name, {})}), weight)
                      for name, weight in parse_reward_spec(spec)])


def _import_builtin() -> None:
    from . import clip_scores, hps, http, image_reward, shapes  # noqa: F401  (registration side effects)
