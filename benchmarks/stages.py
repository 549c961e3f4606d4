"""An iteration's stages side by side, one process, one machine: each choice before and after.

    python -m benchmarks.stages [--iterations 4] [--judge-seconds 0.3]

Every row builds a trainer on the embedded model (the default run's config unless it says
otherwise) and times ``--iterations`` iterations of it, the first left out (warm-up); figures are
medians. The rows of a group take turns, an iteration each, so that a host slowing down (these are
shared machines) moves a group's rows together and its ratios stand. The rows:

- **scorer stage**: sequential against overlapped, with the shapes reward (CPU work beside a CPU
  rollout) and with an HTTP judge on 127.0.0.1, in a process of its own, that answers after
  ``--judge-seconds`` (a VLM judge's wait);
- **update**: one forward and backward per window transition against one for all of them
  (``--batch-transitions``), for MixGRPO-Flash (4 transitions) and DanceGRPO 25/14;
- **checkpointing**: off, selective and full;
- **pipeline**: on-policy against one-step-off (``--pipeline``), with the shapes reward and the HTTP
  judge; one-step-off trains on the previous batch, so it is another run by design ("same run": —).

"same run" says whether the row's metrics (timings aside) equal its group's first row's: to float
rounding for the scorer modes (the rollout batches prompt groups differently) and the update's passes
(within 0.1 %, or 1e-6 absolute), bit for bit for checkpointing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mixgrpo.cli import add_debug_flag, run_command

from . import write_results
from .trainer_runs import machine_info

RESULTS = Path(__file__).resolve().parent / "results"
TIMINGS = ("rollout_s", "reward_s", "scorer_s", "update_s", "seconds")


class SleepyJudge(ThreadingHTTPServer):
    """An HTTP judge that waits ``seconds`` and then scores an image by the length of its PNG (a stand-in VLM)."""

    daemon_threads = True

    def __init__(self, seconds: float):
        super().__init__(("127.0.0.1", 0), _JudgeHandler)
        self.seconds = seconds

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/score"


class JSONHandler(BaseHTTPRequestHandler):
    """A judge's request handler: :meth:`answer` sends a JSON body; no request log."""

    def answer(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


class _JudgeHandler(JSONHandler):
    def do_POST(self):
        import time

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(self.server.seconds)
        self.answer(json.dumps({"score": len(body["image"]) / 1e5}).encode())


def _serve(seconds: float, port) -> None:
    judge = SleepyJudge(seconds)
    port.value = judge.server_address[1]
    judge.serve_forever()


def start_judge(seconds: float):
    """The judge in a process of its own, as a real one runs (in this process its threads would take the GIL
    from the rollout); returns the process and its URL."""
    import multiprocessing
    import time

    context = multiprocessing.get_context("spawn")
    port = context.Value("i", 0)
    process = context.Process(target=_serve, args=(seconds, port), daemon=True)
    process.start()
    while port.value == 0:
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port.value}/score"


def time_group(row_flags: list[list[str]], iterations: int) -> list[dict]:
    """Medians of ``iterations`` − 1 iterations (the first is warm-up) of one trainer per row, built from
    its flags. The rows take turns, an iteration each, so a host that slows down slows every row alike."""
    from trainer.config import parse_config
    from trainer.loop import build

    trainers = [build(parse_config(flags)) for flags in row_flags]
    rows = [[] for _ in trainers]
    for i in range(iterations):
        for trainer, done in zip(trainers, rows):
            done.append(trainer.next_iteration(i))
    return [{**{key: statistics.median(r[key] for r in done[1:]) for key in TIMINGS},
             "metrics": [{k: v for k, v in r.items() if k not in TIMINGS} for r in done]} for done in rows]


def same_run(a: list[dict], b: list[dict], tolerance: float = 0.0) -> bool:
    """Equal metrics rows; with a ``tolerance``, numbers may differ by that much relatively (or by 1e-6)."""
    if tolerance == 0.0:
        return json.dumps(a) == json.dumps(b)

    def close(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return len(x) == len(y) and all(close(u, v) for u, v in zip(x, y))
        if isinstance(x, float):
            return math.isclose(x, y, rel_tol=tolerance, abs_tol=1e-6)
        return x == y
    return close(a, b)


GROUPS = [  # (group, [(row, flags)], relative tolerance of "same run"; None: another run by design)
    ("scorer stage, shapes reward", [("sequential", ["--reward-stage", "sequential"]),
                                     ("overlapped", ["--reward-stage", "overlapped"])], 1e-3),
    ("scorer stage, HTTP judge", [("sequential", ["--reward-stage", "sequential"]),
                                  ("overlapped", ["--reward-stage", "overlapped"])], 1e-3),
    ("update, MixGRPO-Flash", [("per transition", []), ("batched", ["--batch-transitions"])], 1e-3),
    ("update, DanceGRPO 25/14", [("per transition", ["--algo", "dancegrpo"]),
                                 ("batched", ["--algo", "dancegrpo", "--batch-transitions"])], 1e-3),
    ("checkpointing", [("off", []), ("selective", ["--checkpointing", "selective"]),
                       ("full", ["--checkpointing", "full"])], 0.0),
    ("pipeline, shapes reward", [("on-policy", []), ("one-step-off", ["--pipeline", "one-step-off"]),
                                 ("one-step-off, overlapped", ["--pipeline", "one-step-off",
                                                               "--reward-stage", "overlapped"])], None),
    ("pipeline, HTTP judge", [("on-policy", []), ("one-step-off", ["--pipeline", "one-step-off"])], None),
]


def to_markdown(results: list[dict], args, machine: dict) -> str:
    lines = ["# An iteration's stages: each choice before and after", "",
             f"CPU: {machine['cpu']} ({machine['cores']} cores, {machine['torch_threads']} torch threads), torch "
             f"{machine['torch']}. Embedded model, default run config (4 prompts × 8 samples, 25 steps, 128²); "
             f"medians of iterations 2–{args.iterations}; HTTP judge answers after {args.judge_seconds} s. "
             f"Command: `python -m benchmarks.stages --iterations {args.iterations} --judge-seconds "
             f"{args.judge_seconds}`", "",
             "| Stage | Row | Rollout s | Reward s (on the critical path) | Scorer s (own clock) | Update s | s / it "
             "| ÷ first row | Same run |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['group']} | {r['row']} | {r['rollout_s']:.2f} | {r['reward_s']:.2f} | {r['scorer_s']:.2f} "
                     f"| {r['update_s']:.2f} | {r['seconds']:.2f} | {r['ratio']:.2f} | {r['same_run']} |")
    lines += ["", "Reward s is what the rollout did not hide; the scorer's own clock counts its work wherever it ran. "
              "One pass for every transition gives the per-transition gradient to float rounding "
              "(tests/trainer/test_loss.py); where a run still drifts (NO), Adam, which divides gradients of "
              "about 1e-4 by their own size, grows those rounding differences over the iterations. One-step-off "
              "trains each batch one iteration later, so its runs differ by design (—); its update time includes "
              "the gradient-free proximal pass."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--judge-seconds", type=float, default=0.3)
    parser.add_argument("--groups", nargs="+", default=None, help="stage groups to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    judge, url = start_judge(args.judge_seconds)
    http = ["--reward", "http", "--reward-option", f"http.url={url}"]
    results = []
    try:
        for group, rows, tolerance in GROUPS:
            if args.groups and group not in args.groups:
                continue
            timed_rows = time_group([(http if "HTTP" in group else []) + flags for _, flags in rows], args.iterations)
            first = timed_rows[0]
            for (label, _), timed in zip(rows, timed_rows):
                results.append({"group": group, "row": label, **{k: timed[k] for k in TIMINGS},
                                "ratio": timed["seconds"] / first["seconds"],
                                "same_run": "—" if tolerance is None else
                                "yes" if same_run(first["metrics"], timed["metrics"], tolerance) else "NO",
                                "metrics": timed["metrics"]})
    finally:
        judge.terminate()
    machine = machine_info()
    write_results(args.out, "stages", to_markdown(results, args, machine),
                  {"machine": machine, "iterations": args.iterations, "judge_seconds": args.judge_seconds,
                   "rows": results})
    return results


if __name__ == "__main__":
    sys.exit(run_command(main))
