"""A check shared by the models whose prompts keep their own lengths (padded rows and a mask)."""

import torch


def check_masked_rows_cache_and_batch(model, prompts: list[str], length: int = 64) -> dict:
    """Rows pad to ``length`` with a mask of each prompt's own tokens; cached rows come back in any order; a batch of
    prompts of different lengths gives each image what it gets alone. Returns the conditioning of ``prompts``."""
    cond = model.encode_prompts(prompts)
    lengths = cond["prompt_mask"].sum(1).tolist()
    assert cond["prompt_embeds"].shape[:2] == (len(prompts), length) and len(set(lengths)) > 1 and max(lengths) < length
    model.cache_prompts(prompts, release=False)
    cached = model.encode_prompts(prompts[::-1])
    assert torch.equal(cached["prompt_mask"], cond["prompt_mask"].flip(0))
    x = torch.randn(len(prompts), *model.latent_shape(64, 64))
    sigma = torch.linspace(0.7, 0.3, len(prompts))
    together = model.velocity(x, sigma, cond)
    alone = torch.cat([model.velocity(x[i:i + 1], sigma[i:i + 1], {k: v[i:i + 1] for k, v in cond.items()})
                       for i in range(len(prompts))])
    assert (together - alone).abs().max() <= 1e-5
    return cond
