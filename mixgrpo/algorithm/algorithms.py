"""The algorithm registry: one :class:`Algorithm` object per training algorithm, read by everyone.

The plan builder, the trainer's config, CLI and loop, the ComfyUI nodes and the benchmarks all
look an algorithm up here, so a new algorithm is one :func:`register_algorithm` call.

=============  ===============  =======================  ==================  ===========  ==============
``name``       display name     SDE steps (type, η)      ODE after window    compression  window
=============  ===============  =======================  ==================  ===========  ==============
mixgrpo        MixGRPO          window (flow, 0.7)       euler               1 (off)      the run's
flash          MixGRPO-Flash    window (flow, 0.7)       dpm2m (midpoint)    0.4          the run's
flash_star     MixGRPO-Flash*   window (flow, 0.7)       dpm2m (midpoint)    0.2          frozen
dancegrpo      DanceGRPO        every step (dance, 0.3)  —                   1 (off)      —
=============  ===============  =======================  ==================  ===========  ==============

Steps trained: the window's for the MixGRPO family; for DanceGRPO (``sde_everywhere``) every step
is stochastic and each sample trains its own random subset of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


@dataclass(frozen=True)
class Algorithm:
    name: str
    display_name: str
    sde_type: str = "flow"
    eta: float = 0.7
    solver: str = "euler"          # ODE solver after the window
    compression: float = 1.0       # Flash compression r̃ of the grid after the window (1 = off)
    window_strategy: str | None = None  # a strategy it always uses (Flash*: frozen); None: the run's own
    sde_everywhere: bool = False   # DanceGRPO: SDE at every step, no window

    def plan_defaults(self) -> dict:
        """What a sampling plan takes from the algorithm unless told otherwise."""
        return {"sde_type": self.sde_type, "eta": self.eta, "solver": self.solver, "compression": self.compression}

    def strategy(self, requested: str) -> str:
        """The window strategy a run uses: the algorithm's own if it has one, else ``requested``."""
        return self.window_strategy or requested


ALGORITHMS = Registry("algorithm")
register_algorithm = ALGORITHMS.add
algorithm_names = ALGORITHMS.names
get_algorithm = ALGORITHMS.lookup


def defaults_table(field: str) -> str:
    """``"mixgrpo 0.7, flash 0.7, …"``: each algorithm's own value of ``field``, for help texts."""
    return ", ".join(f"{a.name} {getattr(a, field)}" for a in ALGORITHMS.values())


register_algorithm(Algorithm("mixgrpo", "MixGRPO"))
register_algorithm(Algorithm("flash", "MixGRPO-Flash", solver="dpm2m", compression=0.4))
register_algorithm(Algorithm("flash_star", "MixGRPO-Flash*", solver="dpm2m", compression=0.2, window_strategy="frozen"))
register_algorithm(Algorithm("dancegrpo", "DanceGRPO", sde_type="dance", eta=0.3, sde_everywhere=True))
