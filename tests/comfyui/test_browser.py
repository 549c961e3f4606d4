"""A real browser (Debian chromium + playwright) loads each runnable workflow, clicks Run, and gets `success`."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from comfy_setup import ComfyServer, short_trainer_run

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
RUNNABLE = ["embedded_mixgrpo_sampler", "window_visualiser", "best_of_n_reward_scorer", "training_run_monitor"]


def ensure_chromium() -> str:
    """Debian's chromium (Playwright's own download cannot reach its CDN here); installed once if missing."""
    if not Path(CHROMIUM).exists():
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ComfyServer(tmp_path_factory.mktemp("comfyui-browser"), REPO)
    requests.post(f"{s.url}/settings/Comfy.TutorialCompleted", json=True, timeout=10)
    # draw node text at the zoom that fits a whole workflow (screenshots double as thumbnails)
    requests.post(f"{s.url}/settings/LiteGraph.Canvas.LowQualityRenderingZoomThreshold", json=0.2, timeout=10)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=ensure_chromium(), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A short real trainer run for the monitor workflow."""
    return short_trainer_run(tmp_path_factory.mktemp("runs"))


def open_workflow(browser, server, path: Path):
    """A page of the UI with the workflow file loaded through ``#comfy-file-input``; returns (page, node types)."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.goto(server.url)
    page.wait_for_selector("#comfy-file-input", state="attached", timeout=120_000)
    page.wait_for_timeout(2000)
    page.set_input_files("#comfy-file-input", str(path))
    page.wait_for_timeout(2000)
    return page, page.evaluate("() => window.app.graph._nodes.map(n => n.type)")


def save_screenshot(page, name: str, folder: Path) -> Path:
    shot = folder / f"{name}.png"
    page.screenshot(path=str(shot))
    if os.environ.get("MIXGRPO_UPDATE_THUMBNAILS"):
        shutil.copyfile(shot, REPO / "workflows" / f"{name}.png")
    return shot


def wait_for_new_history(server, before: set, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = server.get("/history")
        new = [k for k in history if k not in before]
        for key in new:
            status = history[key].get("status", {})
            if status.get("completed") is not None and status.get("status_str") in ("success", "error"):
                return history[key]
        time.sleep(0.5)
    raise TimeoutError("no new prompt finished after clicking Run")


@pytest.mark.parametrize("name", RUNNABLE)
def test_load_workflow_click_run_and_succeed(server, browser, run_folder, name, tmp_path):
    workflow = json.loads((REPO / "workflows" / f"{name}.json").read_text())
    for node in workflow["nodes"]:
        if node["type"] == "MixGRPOTrainingRunMonitor":
            node["widgets_values"][0] = str(run_folder)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(workflow))

    page, types = open_workflow(browser, server, path)
    assert sorted(types) == sorted(n["type"] for n in workflow["nodes"])

    before = set(server.get("/history"))
    page.get_by_role("button", name="Run", exact=True).first.click()
    entry = wait_for_new_history(server, before)
    assert entry["status"]["status_str"] == "success", entry["status"]
    page.wait_for_timeout(1500)
    assert save_screenshot(page, name, tmp_path).stat().st_size > 10_000
    page.close()


def test_flux_workflow_loads_in_the_ui(server, browser, tmp_path):
    """Needs FLUX.1-dev weights to run; here it must load with every node known to the frontend."""
    path = REPO / "workflows" / "flux_dev_lora_hybrid.json"
    page, types = open_workflow(browser, server, path)
    assert sorted(types) == sorted(n["type"] for n in json.loads(path.read_text())["nodes"])
    assert save_screenshot(page, "flux_dev_lora_hybrid", tmp_path).stat().st_size > 10_000
    page.close()
