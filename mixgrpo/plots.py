"""Figures shared by the trainer and the nodes (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_training(history: list[dict], path: str | Path, evaluations: list[dict] | None = None) -> Path:
    """Three panels: reward per model (and evaluation points), window start, seconds per iteration."""
    plt = _pyplot()
    iterations = [h["iteration"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for name in history[0]["reward"] if history else []:
        axes[0].plot(iterations, [h["reward"][name] for h in history], label=f"train {name}", alpha=0.8)
    if evaluations:
        axes[0].plot([e["iteration"] for e in evaluations], [e["mean"] for e in evaluations], "o-",
                     color="black", label="held-out eval")
    axes[0].set(title="reward", xlabel="iteration")
    axes[0].legend(fontsize=7)
    axes[1].step(iterations, [h["window_start"] for h in history], where="post")
    axes[1].set(title="window start l", xlabel="iteration", ylabel="step index")
    axes[2].plot(iterations, [h["seconds"] for h in history], label="total")
    axes[2].plot(iterations, [h["rollout_s"] for h in history], label="rollout")
    axes[2].plot(iterations, [h["update_s"] for h in history], label="update")
    axes[2].set(title="seconds per iteration", xlabel="iteration")
    axes[2].legend(fontsize=7)
    return _save(fig, path, dpi=100)


def _save(fig, path: str | Path, dpi: int) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


def save_sample_grid(images, captions: list[str], path: str | Path, columns: int = 8) -> Path:
    """A captioned PNG grid of images ``[N, 3, H, W]`` in [0, 1]."""
    plt = _pyplot()
    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.15 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(caption, fontsize=6, wrap=True)
    return _save(fig, path, dpi=110)


def plot_sampling_plan(plan, path: str | Path, title: str = "") -> Path:
    """σ per step, SDE window and ODE regions shaded, compressed steps marked, with the NFE."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    steps = list(range(len(plan.sigmas)))
    ax.plot(steps, plan.sigmas, "o-", color="black", markersize=3, label="σ")
    for i in range(plan.num_steps):
        kind = plan.kind(i)
        colour = {"sde": "tab:red", "euler": "tab:blue"}.get(kind, "tab:green")
        ax.axvspan(i, i + 1, color=colour, alpha=0.18, lw=0)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.3) for c in ("tab:red", "tab:blue", "tab:green")]
    ax.legend(handles, ["SDE (window)", "ODE: Euler", "ODE: DPM-Solver++ 2M"], fontsize=7, loc="upper right")
    if plan.compressed_from is not None:
        ax.axvline(plan.compressed_from, color="tab:green", ls="--", lw=1)
    ax.set(xlabel="step", ylabel="σ", title=title or f"{plan.num_steps} steps, NFE {plan.nfe}")
    return _save(fig, path, dpi=110)


def plot_window_positions(lefts: list[int], size: int, num_steps: int, path: str | Path, title: str = "") -> Path:
    """Which steps are trained (SDE) at each iteration: a step × iteration map."""
    import numpy as np

    plt = _pyplot()
    grid = np.zeros((num_steps, len(lefts)))
    for k, left in enumerate(lefts):
        grid[left:left + size, k] = 1
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.imshow(grid, aspect="auto", origin="upper", cmap="Reds", vmin=0, vmax=1.4, interpolation="nearest")
    ax.set(xlabel="iteration", ylabel="step (0 = σ max)", title=title or f"window of {size} steps")
    return _save(fig, path, dpi=110)
