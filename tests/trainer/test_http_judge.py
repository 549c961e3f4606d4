"""Training against a real HTTP judge on 127.0.0.1 that times out, fails and talks garbage mid-run."""

import base64
import io
import json
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.stages import JSONHandler
from conftest import small_run
from mixgrpo.cli import run_command
from trainer.run import main

pytestmark = pytest.mark.trainer
SAMPLES = 8  # group_size 4 × prompts_per_iter 2
EVAL = 2     # evaluation prompts × 1 seed, scored before and after training


LATE_S = 0.3  # how long a "late" answer takes


class Judge(ThreadingHTTPServer):
    """Scores an image by its red share; answer ``k`` of the run, for ``prompt``, follows ``script(k, prompt)``:
    ok | late (answers after LATE_S) | slow (after the client gave up) | 500 | garbage.

    ``k`` counts connections in the order they are accepted (the order the client opened them), in the server's
    own thread: a handler thread that a loaded machine starts late, after the client gave up on its request and
    moved on, still answers as its place in the run says.
    """

    daemon_threads = True

    def __init__(self, script):
        super().__init__(("127.0.0.1", 0), JudgeHandler)
        self.script, self.count, self.lock, self.places = script, 0, threading.Lock(), {}

    def process_request(self, request, client_address):
        with self.lock:
            self.places[id(request)], self.count = self.count, self.count + 1
        super().process_request(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/score"


class JudgeHandler(JSONHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            k = self.server.places.pop(id(self.request))
        action = self.server.script(k, body["prompt"])
        if action == "slow":
            time.sleep(1.5)  # the client gave up after 0.5 s
            return
        if action == "late":
            time.sleep(LATE_S)
        if action == "500":
            self.send_error(500, "judge overloaded")
            return
        if action == "garbage":
            payload = b"<html>not json</html>"
        else:
            rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB"), dtype=np.float32)
            payload = json.dumps({"score": float((rgb[..., 0] - rgb[..., 1:].mean(-1)).mean() / 255)}).encode()
        self.answer(payload)


@pytest.fixture
def judge(request):
    server = Judge(request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _flags(tmp_path: Path, **overrides) -> list[str]:
    (tmp_path / "eval.txt").write_text("a red circle\na blue square\n")
    return small_run(tmp_path, eval_prompts=tmp_path / "eval.txt", **overrides)


def mid_run_faults(k: int, prompt: str) -> str:
    """Evaluation and iteration 1 answer; iteration 2: 2 time-outs, 2 × 500, 2 garbage, 2 answers; iteration 3 all 500."""
    if k < EVAL + SAMPLES:
        return "ok"
    if k < EVAL + 2 * SAMPLES:
        return ["slow", "500", "garbage", "ok"][(k - EVAL - SAMPLES) // 2]
    if k < EVAL + 3 * SAMPLES:
        return "500"
    return "ok"


@pytest.mark.parametrize("judge", [mid_run_faults], indirect=True)
def test_failed_samples_are_left_out_and_a_wholly_failed_iteration_skips_its_update(tmp_path, judge):
    flags = _flags(tmp_path, reward="http", iterations=3, checkpoint_every=3) + [
        "--reward-option", f"http.url={judge.url}", "--reward-option", "http.timeout=0.5",
        "--reward-option", "http.retries=0"]
    with pytest.warns(UserWarning) as warned:
        summary = main(flags)
    rows = _rows(tmp_path / "runs" / "run")
    assert [r["failed_samples"] for r in rows] == [0, 6, 8]
    assert rows[0]["updates"] == 2 and rows[1]["updates"] == 2 and rows[2]["updates"] == 0
    adv = rows[1]["advantages"]
    assert sum(a != a for a in adv) == 6  # NaN: left out of their groups
    assert rows[0]["reward"]["http"] == rows[0]["reward"]["http"]  # the judge's real scores reached the run
    messages = [str(w.message) for w in warned]
    assert any("iteration 2: 6 of 8 sample(s) had no valid reward" in m for m in messages)
    assert any("iteration 3: every sample's reward failed; its update is skipped" in m for m in messages)
    # a request the run gave up on (0.5 s) may still wait for a handler thread on a loaded machine: let it arrive
    deadline = time.time() + 5
    while judge.count < 2 * EVAL + 3 * SAMPLES and time.time() < deadline:
        time.sleep(0.05)
    assert summary["after"] == summary["after"] and judge.count == 2 * EVAL + 3 * SAMPLES


def judge_goes_down(k: int, prompt: str) -> str:
    return "ok" if k < EVAL else "500"


@pytest.mark.parametrize("judge", [judge_goes_down], indirect=True)
def test_a_judge_that_stays_down_stops_the_run_with_a_checkpoint_to_resume(tmp_path, judge, capsys):
    (tmp_path / "judge.yaml").write_text(f"reward: http\nmax_failed_iterations: 2\n"
                                         f"reward_options:\n  http: {{url: '{judge.url}', retries: 0}}\n")
    flags = _flags(tmp_path, iterations=3, checkpoint_every=3) + ["--config", str(tmp_path / "judge.yaml")]
    with pytest.warns(UserWarning, match="every sample's reward failed"):
        status = run_command(main, flags)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    run = tmp_path / "runs" / "run"
    assert status == 2
    assert line.startswith("error: every sample's reward failed in 2 consecutive iterations (max_failed_iterations=2)")
    assert line.endswith(f"Checkpoint written at iteration 1; resume with: python -m trainer.run --resume {run}")
    assert [r["updates"] for r in _rows(run)] == [0]
    assert json.loads((run / "checkpoints" / "iter-000001" / "state.json").read_text())["iteration"] == 1

    judge.script = lambda k, prompt: "ok"  # the judge is back
    main(["--resume", str(run)])
    rows = _rows(run)
    assert [r["iteration"] for r in rows] == [1, 2, 3] and [r["failed_samples"] for r in rows] == [8, 0, 0]
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()

