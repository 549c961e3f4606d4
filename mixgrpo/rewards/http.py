"""A reward served by any process over HTTP.

Contract (one request per image):

* request: ``POST <url>`` with ``Content-Type: application/json`` and body
  ``{"prompt": "<text>", "image": "<base64 of an 8-bit RGB PNG>"}``;
* response: status 200 with a JSON body ``{"score": <finite number>}`` (other keys are kept as
  details).

Connection errors, time-outs and 5xx answers are retried ``retries`` times with exponential
back-off (0.1 s, 0.2 s, …); 4xx answers and malformed bodies fail at once. A sample that still
fails scores NaN with the reason in its details — never 0 — so the trainer drops it.
``concurrency`` requests run at once.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from .base import Reward, RewardResult
from .registry import RewardSpecError, register


class RewardServerError(Exception):
    """One failed request; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, retry: bool):
        super().__init__(message)
        self.retry = retry


def png_base64(image: Tensor) -> str:
    """``[3, H, W]`` in [0, 1] → base64 of an 8-bit RGB PNG."""
    from PIL import Image

    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@register("http")
class HTTPReward(Reward):
    name = "http"
    device_needs = "network"

    def __init__(self, url: str | None = None, timeout: float = 30.0, retries: int = 2, concurrency: int = 8,
                 backoff: float = 0.1, **_unused):
        if not url:
            raise RewardSpecError(
                "the http reward needs the url of its judge: --reward-option http.url=http://127.0.0.1:8000/score "
                "(trainer), a 'reward_options: {http: {url: ...}}' mapping (YAML config), the Reward Scorer's url "
                "input (ComfyUI), or load_rewards('http', options={'http': {'url': ...}}) (Python).")
        self.url, self.timeout, self.retries = url, timeout, retries
        self.concurrency, self.backoff = max(1, concurrency), backoff

    def _request(self, prompt: str, image_b64: str) -> dict:
        body = json.dumps({"prompt": prompt, "image": image_b64}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise RewardServerError(f"HTTP {error.code} from {self.url}", retry=error.code >= 500) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RewardServerError(f"no answer from {self.url}: {reason}", retry=True) from None
        try:
            answer = json.loads(raw)
            score = float(answer["score"])
        except (ValueError, KeyError, TypeError):
            raise RewardServerError(f"malformed answer from {self.url} (want {{'score': number}}): "
                                    f"{raw[:80]!r}", retry=False) from None
        if not math.isfinite(score):
            raise RewardServerError(f"non-finite score {score} from {self.url}", retry=False)
        return {**answer, "score": score}

    def _score_one(self, prompt: str, image_b64: str) -> dict:
        for attempt in range(self.retries + 1):
            try:
                return self._request(prompt, image_b64)
            except RewardServerError as error:
                if not error.retry or attempt == self.retries:
                    return {"score": math.nan, "error": str(error), "attempts": attempt + 1}
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def score(self, images: Tensor, prompts: list[str]) -> RewardResult:
        encoded = [png_base64(image) for image in images]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(prompts)))) as pool:
            details = list(pool.map(self._score_one, prompts, encoded))
        return RewardResult(torch.tensor([d["score"] for d in details], dtype=torch.float32), details)
