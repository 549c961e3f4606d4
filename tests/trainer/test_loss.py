"""The window loss in one pass for every transition gives the per-transition passes' gradient, KL and DanceGRPO rows too."""

import pytest
import torch

from conftest import small_run
from trainer.config import parse_config
from trainer.loop import build

pytestmark = pytest.mark.trainer


def gradients(trainer, batched: bool, rollout, plan, cond, adv, dance_rows):
    trainer.batch_transitions = batched
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.model.transformer.train()
    info = trainer.policy_backward(rollout.transitions, plan, cond, adv, torch.arange(len(adv)), dance_rows, scale=1.0)
    return info, [p.grad.clone() for p in trainer.params]


@pytest.mark.parametrize("algo, kl_beta", [("flash", 0.0), ("mixgrpo", 0.5), ("dancegrpo", 0.0)])
def test_one_pass_for_every_transition_gives_the_per_transition_gradient(tmp_path, algo, kl_beta):
    trainer = build(parse_config(small_run(tmp_path, algo=algo, kl_beta=kl_beta, group_size=3, prompts_per_iter=2)))
    n, prompts = 3, [0, 1]
    plan = trainer.plan(trainer.windows.left)
    noise = torch.randn(2, *trainer.model.latent_shape(128, 128), generator=torch.Generator().manual_seed(0))
    cond = trainer.conditioning(prompts)
    rollout = trainer.rollout_members(plan, noise, cond, range(6), n, 0)
    sample_cond = {k: v.repeat_interleave(n, dim=0) for k, v in cond.items()}
    adv = torch.tensor([1.0, -0.5, -0.5, 0.3, 0.7, -1.0])
    dance_rows = trainer.trained_rows(range(6), 6, 0, [t.step for t in rollout.transitions])
    assert len(rollout.transitions) >= 2
    with torch.no_grad():  # a policy that has moved from the rollout's: ratios away from 1, some clipped
        for p in trainer.params:
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    one, grads_one = gradients(trainer, False, rollout, plan, sample_cond, adv, dance_rows)
    every, grads_every = gradients(trainer, True, rollout, plan, sample_cond, adv, dance_rows)
    assert one["max_abs_log_ratio"] > 1e-4  # the comparison is not between zeros
    for a, b in zip(grads_one, grads_every):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5 * float(a.abs().max()))
    assert every == pytest.approx(one, rel=1e-4, abs=1e-7)
    if kl_beta:
        assert one["kl"] > 0
