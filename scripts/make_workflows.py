"""Write the example workflows in ``workflows/`` (ComfyUI UI format) from compact descriptions.

    python scripts/make_workflows.py            # starts a test ComfyUI for /object_info, writes workflows/*.json

A workflow is a list of :class:`Node` (type, widget values by input name, links by input name);
the script orders widget values and wires links the way ComfyUI's frontend saves them, using the
server's ``/object_info`` (so each file loads with its widgets in the right slots).
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfyui"))  # the test harness: a ComfyUI server and the UI-format rules

from workflow_api import has_seed_control, input_specs, is_widget  # noqa: E402


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)   # input name -> (source node id, output slot)
    title: str | None = None


def to_ui(nodes: list[Node], object_info: dict, title: str) -> dict:
    """The UI-format workflow of ``nodes``."""
    by_id = {n.id: n for n in nodes}
    links, ui_nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    for node in nodes:
        for name, (src, slot) in node.links.items():
            link_id = len(links) + 1
            kind = object_info[by_id[src].type]["output"][slot]
            links.append([link_id, src, slot, node.id, name, kind])
            out_links.setdefault((src, slot), []).append(link_id)
    for order, node in enumerate(nodes):
        info = object_info[node.type]
        inputs, widgets = [], []
        for name, spec in input_specs(info):
            if name in node.links:
                link = next(l for l in links if l[3] == node.id and l[4] == name)
                inputs.append({"name": name, "type": link[5], "link": link[0]})
            elif is_widget(spec):
                if name not in node.widgets:
                    raise KeyError(f"{node.type} #{node.id}: no value for widget {name!r}")
                widgets.append(node.widgets[name])
                if has_seed_control(spec):
                    widgets.append("fixed")
        outputs = [{"name": n, "type": t, "links": out_links.get((node.id, slot), []), "slot_index": slot}
                   for slot, (n, t) in enumerate(zip(info["output_name"], info["output"]))]
        ui_nodes.append({"id": node.id, "type": node.type, "pos": list(node.pos), "size": [300, 120], "flags": {},
                         "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                         "properties": {"Node name for S&R": node.type}, "widgets_values": widgets,
                         **({"title": node.title} if node.title else {})})
    for link in links:  # the UI format stores the target slot index, not the input name
        target = next(n for n in ui_nodes if n["id"] == link[3])
        link[4] = [i["name"] for i in target["inputs"]].index(link[4])
    return {"last_node_id": max(n.id for n in nodes), "last_link_id": len(links), "nodes": ui_nodes,
            "links": links, "groups": [], "config": {}, "extra": {"mixgrpo": {"title": title}}, "version": 0.4}


def embedded_sampler(batch: int = 1, prompt: str = "a red circle above a blue square") -> list[Node]:
    """The embedded model samples with classifier-free guidance at the scale its ``mixgrpo.json`` records
    (an empty negative prompt), as the trainer and the evaluation do."""
    from mixgrpo.models.embedded import EMBEDDED_DIR, read_settings

    cfg = float(read_settings(EMBEDDED_DIR).get("cfg_scale", 1.0))
    return [
        Node(1, "LoadMixGRPOModel", (20, 60), {"model": "embedded (shapes-flux-tiny)", "lora_name": "none",
                                               "lora_path": "", "strength": 1.0}),
        Node(2, "CLIPTextEncode", (380, 40), {"text": prompt}, {"clip": (1, 1)}, title="prompt"),
        Node(3, "CLIPTextEncode", (700, 40), {"text": ""}, {"clip": (1, 1)}, title="negative (empty)"),
        Node(4, "CFGGuider", (1000, 40), {"cfg": cfg}, {"model": (1, 0), "positive": (2, 0), "negative": (3, 0)}),
        Node(5, "EmptySD3LatentImage", (380, 260), {"width": 128, "height": 128, "batch_size": batch}),
        Node(6, "BasicScheduler", (380, 440), {"scheduler": "simple", "steps": 25, "denoise": 1.0},
             {"model": (1, 0)}),
        Node(7, "MixGRPOSampler", (700, 240), {"window_by": "start step", "window_start": 0, "window_percent": 0.0,
                                               "window_size": 4, "eta": 0.7, "sde_type": "flow", "solver": "euler",
                                               "flash_compression": 1.0}),
        Node(8, "RandomNoise", (700, 560), {"noise_seed": 42}),
        Node(9, "SamplerCustomAdvanced", (1000, 240), links={"noise": (8, 0), "guider": (4, 0), "sampler": (7, 0),
                                                             "sigmas": (6, 0), "latent_image": (5, 0)}),
        Node(10, "VAEDecode", (1300, 240), links={"samples": (9, 0), "vae": (1, 2)}),
    ]


def workflows() -> dict[str, tuple[str, list[Node]]]:
    best_of = embedded_sampler(batch=8)
    best_of += [
        Node(11, "MixGRPORewardScorer", (1550, 240), {"prompt": "a red circle above a blue square",
                                                      "rewards": "shapes:1", "url": ""}, {"images": (10, 0)}),
        Node(12, "ImageFromBatch", (1850, 240), {"batch_index": 0, "length": 1}, {"image": (11, 1)}),
        Node(13, "SaveImage", (2100, 240), {"filename_prefix": "mixgrpo_best_of_8"}, {"images": (12, 0)}),
    ]
    hybrid = [
        Node(1, "UNETLoader", (20, 40), {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}),
        Node(2, "LoraLoaderModelOnly", (340, 40), {"lora_name": "mixgrpo_flux_lora.safetensors",
                                                   "strength_model": 1.0}, {"model": (1, 0)}),
        Node(3, "DualCLIPLoader", (20, 260), {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                                              "type": "flux", "device": "default"}),
        Node(4, "VAELoader", (20, 480), {"vae_name": "ae.safetensors"}),
        Node(5, "CLIPTextEncode", (340, 260), {"text": "a photo of a red fox reading a book in a library"},
             {"clip": (3, 0)}),
        Node(6, "FluxGuidance", (660, 260), {"guidance": 3.5}, {"conditioning": (5, 0)}),
        Node(7, "BasicScheduler", (340, 480), {"scheduler": "simple", "steps": 25, "denoise": 1.0}, {"model": (1, 0)}),
        Node(8, "SplitSigmas", (660, 480), {"step": 20}, {"sigmas": (7, 0)}, title="80 % aligned / 20 % base"),
        Node(9, "BasicGuider", (980, 40), links={"model": (2, 0), "conditioning": (6, 0)}, title="aligned (LoRA)"),
        Node(10, "BasicGuider", (980, 260), links={"model": (1, 0), "conditioning": (6, 0)}, title="base"),
        Node(11, "MixGRPOSampler", (660, 640), {"window_by": "start step", "window_start": 0, "window_percent": 0.0,
                                                "window_size": 0, "eta": 0.7, "sde_type": "flow", "solver": "euler",
                                                "flash_compression": 1.0}),
        Node(12, "EmptySD3LatentImage", (340, 700), {"width": 1024, "height": 1024, "batch_size": 1}),
        Node(13, "RandomNoise", (980, 480), {"noise_seed": 42}),
        Node(14, "DisableNoise", (980, 640)),
        Node(15, "SamplerCustomAdvanced", (1300, 40), links={"noise": (13, 0), "guider": (9, 0), "sampler": (11, 0),
                                                             "sigmas": (8, 0), "latent_image": (12, 0)}),
        Node(16, "SamplerCustomAdvanced", (1300, 360), links={"noise": (14, 0), "guider": (10, 0), "sampler": (11, 0),
                                                              "sigmas": (8, 1), "latent_image": (15, 0)}),
        Node(17, "VAEDecode", (1600, 360), links={"samples": (16, 0), "vae": (4, 0)}),
        Node(18, "SaveImage", (1850, 360), {"filename_prefix": "flux_mixgrpo_hybrid"}, {"images": (17, 0)}),
    ]
    return {
        "embedded_mixgrpo_sampler": ("Embedded shapes model with the MixGRPO sampler", embedded_sampler() + [
            Node(11, "SaveImage", (1550, 240), {"filename_prefix": "mixgrpo_embedded"}, {"images": (10, 0)})]),
        "window_visualiser": ("Sliding-window visualiser", [
            Node(1, "MixGRPOWindowVisualiser", (20, 40), {"algorithm": "flash", "steps": 25, "shift": 3.0,
                                                          "window_size": 4, "window_start": 4, "strategy": "progressive",
                                                          "shift_interval": 25, "stride": 1, "iterations": 300,
                                                          "strategy_seed": 0}),
            Node(2, "SaveImage", (400, 40), {"filename_prefix": "mixgrpo_schedule"}, {"images": (1, 0)}),
            Node(3, "SaveImage", (400, 400), {"filename_prefix": "mixgrpo_windows"}, {"images": (1, 1)})]),
        "best_of_n_reward_scorer": ("Best of 8 with the reward scorer", best_of),
        "training_run_monitor": ("Trainer run monitor", [
            Node(1, "MixGRPOTrainingRunMonitor", (20, 40), {"run_folder": "runs/mixgrpo-run"}),
            Node(2, "SaveImage", (400, 40), {"filename_prefix": "run_curves"}, {"images": (1, 0)}),
            Node(3, "SaveImage", (400, 400), {"filename_prefix": "run_samples"}, {"images": (1, 1)})]),
        "flux_dev_lora_hybrid": ("FLUX.1-dev + aligned LoRA for the first 80 % of steps, base for the rest", hybrid),
    }


def main() -> None:
    from comfy_setup import ComfyServer

    with tempfile.TemporaryDirectory() as tmp:
        server = ComfyServer(Path(tmp), REPO)
        try:
            info = server.get("/object_info")
        finally:
            server.stop()
    out = REPO / "workflows"
    out.mkdir(exist_ok=True)
    for name, (title, nodes) in workflows().items():
        (out / f"{name}.json").write_text(json.dumps(to_ui(nodes, info, title), indent=1) + "\n")
        print(f"wrote workflows/{name}.json")


if __name__ == "__main__":
    main()
