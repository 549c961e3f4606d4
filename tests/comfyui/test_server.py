"""The node pack in a real ComfyUI server: registration, API prompts, outputs and node errors."""

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_setup import ComfyServer

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[2]
OUR_NODES = {"MixGRPOSampler", "MixGRPOSchedule", "MixGRPOWindowVisualiser", "MixGRPORewardScorer",
             "LoadMixGRPOModel", "MixGRPOTrainingRunMonitor"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ComfyServer(tmp_path_factory.mktemp("comfyui"), REPO)
    yield s
    s.stop()


def sampler_prompt(window_start=0, window_size=4, steps=12, prompt="a red circle", seed=5):
    return {
        "1": {"class_type": "LoadMixGRPOModel", "inputs": {"model": "embedded (shapes-flux-tiny)", "lora_name": "none",
                                                            "strength": 1.0, "lora_path": ""}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": prompt}},
        "3": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["2", 0], "guidance": 3.5}},
        "4": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 2}},
        "5": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": steps,
                                                         "denoise": 1.0}},
        "6": {"class_type": "MixGRPOSampler", "inputs": {"window_by": "start step", "window_start": window_start,
                                                         "window_percent": 0.0, "window_size": window_size, "eta": 0.7,
                                                         "sde_type": "flow", "solver": "euler",
                                                         "flash_compression": 1.0}},
        "7": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["3", 0]}},
        "8": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "9": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["8", 0], "guider": ["7", 0],
                                                                "sampler": ["6", 0], "sigmas": ["5", 0],
                                                                "latent_image": ["4", 0]}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "mixgrpo"}},
        "12": {"class_type": "MixGRPORewardScorer", "inputs": {"images": ["10", 0], "prompt": prompt,
                                                                "rewards": "shapes:1"}},
    }


def saved_images(server, entry, node="11") -> list[np.ndarray]:
    out = []
    for image in entry["outputs"][node]["images"]:
        path = server.base / image["type"] / image["subfolder"] / image["filename"]
        out.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255)
    return out


def test_pack_imports_and_every_node_is_registered(server):
    info = server.get("/object_info")
    assert OUR_NODES <= set(info)
    # ComfyUI's own audio nodes fail without torchaudio (not installed: see comfy_setup); ours must not
    ours = [line for line in server.log.splitlines() if "custom_nodes/comfyui-mixgrpo" in line]
    assert ours and not any("IMPORT FAILED" in line or "Cannot import" in line for line in ours), ours
    assert all(info[n]["category"].startswith("MixGRPO/") for n in OUR_NODES)
    assert info["MixGRPOSampler"]["output"] == ["SAMPLER"]
    url = info["MixGRPORewardScorer"]["input"]["optional"]["url"]
    assert url[0] == "STRING" and url[1]["default"] == ""
    assert "reward_models" in server.get("/models")


def test_sampler_workflow_outputs_images_and_scores_matching_the_registry(server):
    entry = server.run_prompt(sampler_prompt())
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = saved_images(server, entry)
    assert len(images) == 2 and images[0].shape == (128, 128, 3)
    assert all(im.std() > 0.005 for im in images)  # decoded images, not constant fills
    assert np.abs(images[0] - images[1]).max() > 0.01  # different noise per batch item
    summary = entry["outputs"]["12"]["text"][0]
    from mixgrpo.shapes import score_shapes

    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    ours = score_shapes(batch, ["a red circle"] * 2)[0]
    listed = sorted(float(line.split("score ")[1].split()[0]) for line in summary.splitlines()[1:])
    # the saved PNG is 8-bit: scores of the re-read images agree to the quantisation's effect
    assert np.allclose(sorted(ours.tolist()), listed, atol=2e-2)


def test_visualiser_returns_plot_images(server):
    prompt = {"1": {"class_type": "MixGRPOWindowVisualiser", "inputs": {
        "algorithm": "flash", "steps": 25, "shift": 3.0, "window_size": 4, "window_start": 2, "strategy": "progressive",
        "shift_interval": 25, "stride": 1, "iterations": 300, "strategy_seed": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "plan"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 1], "filename_prefix": "windows"}}}
    entry = server.run_prompt(prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    plan, windows = saved_images(server, entry, "2")[0], saved_images(server, entry, "3")[0]
    assert plan.shape == (374, 770, 3) and windows.shape == (374, 770, 3)  # 7×3.4 in at 110 dpi
    assert plan.std() > 0.05


def test_bad_inputs_are_node_errors_and_the_server_keeps_serving(server):
    entry = server.run_prompt(sampler_prompt(window_start=10, window_size=4, steps=12))
    assert entry["status"]["status_str"] == "error"
    messages = str(entry["status"]["messages"])
    assert "do not fit a 12-step schedule" in messages
    missing = sampler_prompt()
    missing["12"]["inputs"]["rewards"] = "hpsv2.1:1"
    entry = server.run_prompt(missing)
    assert entry["status"]["status_str"] == "error"
    message = str(entry["status"]["messages"])
    # the core searched ComfyUI's models/reward_models/ (not just a hint naming the folder)
    assert str(server.base / "models" / "reward_models" / "HPS_v2.1_compressed.pt") in message, message
    unknown = sampler_prompt()
    unknown["12"]["inputs"]["rewards"] = "nosuch:1"
    entry = server.run_prompt(unknown)
    assert entry["status"]["status_str"] == "error"
    assert "unknown reward 'nosuch'; available:" in str(entry["status"]["messages"])
    non_flow = sampler_prompt()  # ComfyUI's own ModelSamplingDiscrete node turns the model into an EPS model
    non_flow["13"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["1", 0], "sampling": "eps",
                                                                        "zsnr": False}}
    non_flow["7"]["inputs"]["model"] = ["13", 0]
    entry = server.run_prompt(non_flow)
    assert entry["status"]["status_str"] == "error"
    assert "needs a flow-matching model" in str(entry["status"]["messages"])
    entry = server.run_prompt(sampler_prompt(seed=9))
    assert entry["status"]["status_str"] == "success"


@pytest.fixture
def judge():
    """An HTTP reward judge on 127.0.0.1 (mixgrpo/rewards/http.py contract): score = mean red channel in [0, 1]."""
    seen = []

    class Judge(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB"), dtype=np.float64)
            score = rgb[..., 0].mean() / 255
            seen.append((body["prompt"], score))
            answer = json.dumps({"score": score}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_address[1]}/score", seen
    http.shutdown()
    http.server_close()


def judged_prompt(url, rewards="http:1", colours=(0x3250FA, 0xC81E1E)):
    """Two solid 32×32 images scored by the Reward Scorer; its best-first batch is saved."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": colours[0]}},
            "2": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": colours[1]}},
            "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
            "4": {"class_type": "MixGRPORewardScorer", "inputs": {"images": ["3", 0], "prompt": "a red circle",
                                                                   "rewards": rewards, "url": url}},
            "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 1], "filename_prefix": "judged"}}}


def summary_scores(entry, node="4") -> dict[int, float]:
    """Image index → score from the Reward Scorer's summary ("#1: image 1  score 0.7843  http 0.7843")."""
    lines = entry["outputs"][node]["text"][0].splitlines()[1:]
    return {int(line.split("image ")[1].split()[0]): float(line.split("score ")[1].split()[0]) for line in lines}


def test_http_reward_scores_with_the_judge_at_the_url_input(server, judge):
    url, seen = judge
    entry = server.run_prompt(judged_prompt(url))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert sorted(p for p, _ in seen) == ["a red circle"] * 2  # one request per image, with the prompt
    judged = sorted(score for _, score in seen)
    assert np.allclose(judged, [0x32 / 255, 0xC8 / 255])  # the judge read the images the node sent
    scores = summary_scores(entry)
    assert np.allclose([scores[0], scores[1]], [0x32 / 255, 0xC8 / 255], atol=1e-4), scores  # the judge's values
    best = saved_images(server, entry, "5")
    assert len(best) == 2 and best[0][..., 0].mean() > best[1][..., 0].mean()  # the redder image first

    ignored = server.run_prompt(judged_prompt(url, rewards="shapes:1"))  # a url left set is unused by other rewards
    assert ignored["status"]["status_str"] == "success", ignored["status"]
    assert len(seen) == 2
    no_url = server.run_prompt(judged_prompt("", colours=(0x102030, 0x405060)))
    assert no_url["status"]["status_str"] == "error"
    assert "url input" in str(no_url["status"]["messages"])  # the error says where the url goes


def test_cancel_interrupts_the_sampler_and_the_server_keeps_serving(server):
    import requests

    long = sampler_prompt(steps=6000, window_start=100)  # minutes of sampling unless Cancel works
    prompt_id = requests.post(f"{server.url}/prompt", json={"prompt": long}, timeout=30).json()["prompt_id"]
    deadline = time.time() + 120
    while not server.get("/queue")["queue_running"] and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # into the sampling loop
    started = time.time()
    requests.post(f"{server.url}/interrupt", timeout=30)
    while prompt_id not in server.get(f"/history/{prompt_id}") and time.time() < deadline:
        time.sleep(0.2)
    entry = server.get(f"/history/{prompt_id}")[prompt_id]
    assert time.time() - started < 30, "Cancel did not stop the sampler"
    assert entry["status"]["status_str"] == "error"
    assert "execution_interrupted" in str(entry["status"]["messages"])
    assert server.run_prompt(sampler_prompt(seed=11))["status"]["status_str"] == "success"
