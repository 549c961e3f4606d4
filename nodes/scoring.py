"""Reward Scorer: score an IMAGE batch against a prompt with rewards from the registry, best first."""

from __future__ import annotations

import torch

from mixgrpo.rewards import load_rewards, parse_reward_spec

from ._api import CATEGORY, images_to_batch, io, register_reward_folders, ui


class RewardScorer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MixGRPORewardScorer",
            display_name="Reward Scorer",
            category=f"{CATEGORY}/rewards",
            is_output_node=True,
            description="Scores images with human-preference or rule rewards (weights from models/reward_models) "
                        "or an HTTP judge ('http' at url), and returns the batch sorted best-first.",
            inputs=[
                io.Image.Input("images"),
                io.String.Input("prompt", multiline=True, default="a red circle"),
                io.String.Input("rewards", default="shapes:1",
                                tooltip="Rewards with weights, e.g. 'hpsv2.1:1,pickscore:1' or 'shapes:1'."),
                io.String.Input("url", default="", optional=True,
                                tooltip="The judge of the 'http' reward, e.g. http://127.0.0.1:8000/score: it receives "
                                        "{prompt, image: base64 PNG} and answers {score}. Unused by other rewards."),
            ],
            outputs=[io.Float.Output(display_name="scores", is_output_list=True),
                     io.Image.Output(display_name="best_first"),
                     io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, images, prompt, rewards, url="") -> io.NodeOutput:
        register_reward_folders()  # reward_models folders added since start-up are searched too
        batch = images_to_batch(images)
        prompts = [prompt] * len(batch)
        url = url.strip()  # a url left in the widget while scoring with other rewards is not an error
        options = {"http": {"url": url}} if url and "http" in dict(parse_reward_spec(rewards)) else None
        scored = load_rewards(rewards, options=options).score(batch, prompts)
        per_reward, scores = scored.raw, scored.total()
        order = torch.argsort(torch.nan_to_num(scores, nan=-torch.inf), descending=True)  # failed scores last
        lines = [f"#{rank + 1}: image {int(i)}  score {scores[i]:.4f}  " +
                 "  ".join(f"{name} {values[i]:.4f}" for name, values in per_reward.items())
                 for rank, i in enumerate(order)]
        summary = f"{rewards} on {len(batch)} image(s), mean {scores.mean():.4f}\n" + "\n".join(lines)
        return io.NodeOutput([float(s) for s in scores], images[order], summary, ui=ui.PreviewText(summary))
