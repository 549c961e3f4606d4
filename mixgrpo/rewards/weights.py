"""Where reward weight files are found, in this order:

1. an explicit path (``checkpoint=...``);
2. an environment variable: the reward's own (e.g. ``MIXGRPO_HPS_V2_1``, a file), then
   ``MIXGRPO_REWARD_DIR`` (a folder);
3. ComfyUI's ``models/reward_models/`` folders (the node pack registers them with :func:`add_search_dir`;
   the core never imports ComfyUI);
4. the user cache ``$XDG_CACHE_HOME/mixgrpo/rewards`` (``~/.cache/mixgrpo/rewards``).

A file found nowhere is a :class:`~mixgrpo.errors.ModelLoadError` that lists every place looked at
and where the official weights are published.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelLoadError

_SEARCH_DIRS: list[Path] = []


def add_search_dir(path: str | Path) -> None:
    """Look for reward weights in ``path`` too (ComfyUI's ``models/reward_models``)."""
    path = Path(path)
    if path not in _SEARCH_DIRS:
        _SEARCH_DIRS.append(path)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mixgrpo" / "rewards"


def find_weight_file(filename: str, explicit: str | Path | None = None, env_var: str | None = None,
                     published_at: str = "", folder: bool = False) -> Path:
    """The path of ``filename`` (a folder when ``folder``, e.g. a transformers model) by the order above."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    if env_var and os.environ.get(env_var):
        candidates.append(Path(os.environ[env_var]))
    if os.environ.get("MIXGRPO_REWARD_DIR"):
        candidates.append(Path(os.environ["MIXGRPO_REWARD_DIR"]) / filename)
    candidates += [d / filename for d in _SEARCH_DIRS] + [cache_dir() / filename]
    for path in candidates:
        if (path.is_dir() if folder else path.is_file()):
            return path
    looked = "\n  ".join(str(p) for p in candidates)
    raise ModelLoadError(
        f"reward weight {'folder' if folder else 'file'} {filename!r} not found. Looked in:\n  {looked}\n"
        f"Put it in ComfyUI's models/reward_models/, in {cache_dir()}, or point "
        f"{env_var or 'MIXGRPO_REWARD_DIR'} at it." + (f" The official file is published at {published_at}." if published_at else ""))
