"""The HTTP reward against small loopback servers the test starts (127.0.0.1 only, bounded)."""

import base64
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from PIL import Image

from mixgrpo.rewards.http import HTTPReward

pytestmark = pytest.mark.models


class Server:
    """A scoring server: ``mode`` is ok, slow, garbage, flaky (503 twice, then ok) or missing."""

    def __init__(self, mode):
        self.mode, self.calls, self.active, self.max_active = mode, 0, 0, 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.calls += 1
                    owner.active += 1
                    owner.max_active = max(owner.max_active, owner.active)
                    call = owner.calls
                try:
                    time.sleep(0.05)
                    if owner.mode == "slow":
                        time.sleep(1.0)
                    if owner.mode == "flaky" and call <= 2:
                        return self._send(503, b"busy")
                    if owner.mode == "garbage":
                        return self._send(200, b"<html>not json</html>")
                    image = Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB")
                    red = sum(image.getchannel("R").histogram()[255:]) / (image.width * image.height)
                    self._send(200, json.dumps({"score": red + len(body["prompt"]), "size": image.size}).encode())
                finally:
                    with owner.lock:
                        owner.active -= 1

            def _send(self, code, payload):
                self.send_response(code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/score"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(request):
    s = Server(request.param)
    yield s
    s.close()


IMAGES = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
PROMPTS = ["ab", "abcd"]


@pytest.mark.parametrize("server", ["ok"], indirect=True)
def test_scores_follow_the_contract_concurrently(server):
    reward = HTTPReward(url=server.url, concurrency=4)
    images = IMAGES.repeat(4, 1, 1, 1)
    result = reward(images, PROMPTS * 4)
    assert result.scores.tolist() == pytest.approx([2.0, 5.0] * 4)  # red fraction + prompt length
    assert result.details[1]["size"] == [8, 8]
    assert server.max_active > 1  # requests overlapped


@pytest.mark.parametrize("server", ["slow"], indirect=True)
def test_timeouts_fail_the_sample_after_bounded_retries(server):
    started = time.perf_counter()
    result = HTTPReward(url=server.url, timeout=0.3, retries=1, backoff=0.01)(IMAGES, PROMPTS)
    assert torch.isnan(result.scores).all() and result.failed.all()
    assert all(d["attempts"] == 2 and "no answer" in d["error"] for d in result.details)
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize("server", ["garbage"], indirect=True)
def test_garbage_fails_at_once_and_is_never_zero(server):
    result = HTTPReward(url=server.url, retries=3)(IMAGES, PROMPTS)
    assert all(math.isnan(s) for s in result.scores.tolist())
    assert all(d["attempts"] == 1 and "malformed" in d["error"] for d in result.details)


@pytest.mark.parametrize("server", ["flaky"], indirect=True)
def test_server_errors_are_retried(server):
    result = HTTPReward(url=server.url, retries=2, concurrency=1, backoff=0.01)(IMAGES[:1], PROMPTS[:1])
    assert result.scores.tolist() == [2.0] and server.calls == 3


def test_nobody_listening_is_a_failed_sample():
    result = HTTPReward(url="http://127.0.0.1:9/score", timeout=0.5, retries=0)(IMAGES[:1], PROMPTS[:1])
    assert math.isnan(result.scores.item()) and "no answer" in result.details[0]["error"]
