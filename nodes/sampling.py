"""MixGRPO Sampler (a ``SAMPLER`` for SamplerCustom / SamplerCustomAdvanced) and MixGRPO Schedule."""

from __future__ import annotations

from mixgrpo.algorithm.denoiser_sampling import WindowOptions, sample_with_denoiser
from mixgrpo.algorithm.plan import build_plan

from ._api import CATEGORY, NotAFlowModel, check_interrupted, flow_shift, io, ksampler, model_sampling_of, noise_scale

SOLVERS = {"euler": "euler", "dpm++ 2m midpoint": "dpm2m", "dpm++ 2m heun": "dpm2m_heun"}
WINDOW_BY = ("start step", "percent of schedule")


def window_inputs() -> list:
    return [
        io.Combo.Input("window_by", options=list(WINDOW_BY), default=WINDOW_BY[0],
                       tooltip="Place the SDE window by step index, or by a percentage of the schedule's steps."),
        io.Int.Input("window_start", default=0, min=0, max=10000,
                     tooltip="First SDE step (0 = the first, noisiest step). Used with 'start step'."),
        io.Float.Input("window_percent", default=0.0, min=0.0, max=100.0, step=0.5,
                       tooltip="Window start as a percentage of the steps. Used with 'percent of schedule'."),
        io.Int.Input("window_size", default=4, min=0, max=1000,
                     tooltip="Number of SDE steps; 0 samples with the ODE only (deterministic)."),
    ]


def mixgrpo_sample(model, x, sigmas, extra_args=None, callback=None, disable=None, options=None):
    """KSAMPLER function: checks the model is a flow model, then samples with the core."""
    extra_args = extra_args or {}
    sampling = model_sampling_of(model)
    shift = flow_shift(sampling)
    scale = noise_scale(sampling)
    if scale != 1.0 and options.window(len(sigmas) - 1):
        raise NotAFlowModel(f"this model scales its noise by {scale:g} ({type(sampling).__name__}); the MixGRPO "
                            "Sampler's SDE window draws unit noise. Sample it with window_size 0 (the ODE, which "
                            "any noise scale takes) or with a stock sampler.")

    def denoiser(xt, sigma):
        return model(xt, sigma, **extra_args)

    def on_step(info):
        check_interrupted()
        if callback is not None:
            callback({"i": info.index, "denoised": info.denoised, "x": info.x, "sigma": info.sigma,
                      "sigma_hat": info.sigma})

    return sample_with_denoiser(denoiser, x, sigmas, options, seed=extra_args.get("seed", 0) or 0,
                                shift=shift, callback=on_step)


class MixGRPOSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MixGRPOSampler",
            display_name="MixGRPO Sampler",
            category=f"{CATEGORY}/sampling",
            description="Mixed SDE/ODE sampling of flow models (FLUX.1, FLUX.2, SD3, Qwen-Image, Z-Image): ODE everywhere "
                        "except a window of SDE steps. Plug into SamplerCustom or SamplerCustomAdvanced.",
            inputs=[
                *window_inputs(),
                io.Float.Input("eta", default=0.7, min=0.0, max=2.0, step=0.01,
                               tooltip="SDE noise level inside the window (0 = deterministic)."),
                io.Combo.Input("sde_type", options=["flow", "dance"], default="flow",
                               tooltip="flow: MixGRPO's Flow-SDE; dance: DanceGRPO's SDE."),
                io.Combo.Input("solver", options=list(SOLVERS), default="euler",
                               tooltip="ODE solver after the window."),
                io.Float.Input("flash_compression", default=1.0, min=0.05, max=1.0, step=0.05,
                               tooltip="MixGRPO-Flash r̃: the steps after the window are cut to this share "
                                       "(1.0 = off). Pair with a dpm++ 2m solver."),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, window_by, window_start, window_percent, window_size, eta, sde_type, solver,
                flash_compression) -> io.NodeOutput:
        options = WindowOptions(start=window_start, size=window_size, eta=eta, sde_type=sde_type,
                                solver=SOLVERS[solver], compression=flash_compression,
                                percent=window_percent if window_by == WINDOW_BY[1] else None)
        return io.NodeOutput(ksampler(mixgrpo_sample, options=options))


class MixGRPOSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MixGRPOSchedule",
            display_name="MixGRPO Schedule",
            category=f"{CATEGORY}/sampling",
            description="The (Flash-compressed) σ schedule of a window: reuse it with any sampler.",
            inputs=[
                io.Int.Input("steps", default=25, min=1, max=1000),
                io.Float.Input("shift", default=3.0, min=0.01, max=100.0, step=0.01,
                               tooltip="SD3-style time shift (FLUX.1-dev at 1024²: about 3)."),
                io.Int.Input("window_start", default=0, min=0, max=1000),
                io.Int.Input("window_size", default=4, min=0, max=1000),
                io.Float.Input("flash_compression", default=1.0, min=0.05, max=1.0, step=0.05),
            ],
            outputs=[io.Sigmas.Output(), io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, steps, shift, window_start, window_size, flash_compression) -> io.NodeOutput:
        plan = build_plan("mixgrpo", num_steps=steps, shift=shift, window_start=window_start,
                          window_size=window_size, compression=flash_compression)
        sde = [i for i in range(plan.num_steps) if plan.kind(i) == "sde"]
        info = (f"{plan.num_steps} steps (NFE {plan.nfe}) from {steps}; SDE steps "
                f"{sde[0]}–{sde[-1]}" if sde else f"{plan.num_steps} steps (NFE {plan.nfe}), no SDE window")
        info += f"; σ: {', '.join(f'{s:.3f}' for s in plan.sigmas)}"
        return io.NodeOutput(plan.sigmas_tensor(), info, ui={"text": [info]})
