"""What a flow model needs on a GPU, in one place: the dtype each part computes in, and the attention kernels.

**Load dtypes** (docs/trainer.md, "One GPU"). Under ``--mixed-precision bf16`` (or fp16) every
frozen weight loads in that compute dtype: the base transformer under a LoRA, the VAE, the text
encoders. Trained weights keep an fp32 master copy (the LoRA, or the whole transformer of a full
fine-tune); autocast runs their matrix products in the compute dtype. Without CUDA, or without mixed
precision, everything stays float32, exactly as on a CPU.

**Attention kernels.** PyTorch's SDPA picks cuDNN's fused attention first on Hopper. Its backward
pass fails inside the trainer's update (torch 2.11, cuDNN 9.19, H200): ``mha_graph.execute(...)`` is
not good, reported asynchronously as "an illegal memory access", while every forward pass (rollout,
evaluation) runs. Isolated attention calls of the same shapes pass, forward and backward, so the
trigger is something of the whole update; the flash and memory-efficient kernels run the same update
correctly, so CUDA runs leave cuDNN attention off (benchmarks/results/gpu_cli.md has the probe).
"""

from __future__ import annotations

import torch

COMPUTE_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(mixed_precision: str, device: str | torch.device) -> torch.dtype:
    """The dtype frozen weights load in and autocast computes in: float32 off CUDA or without mixed precision."""
    if torch.device(device).type != "cuda":
        return torch.float32
    return COMPUTE_DTYPES[mixed_precision]


def autocast_dtype(mixed_precision: str, device: str | torch.device) -> torch.dtype | None:
    """The dtype of the model's autocast regions, or None where it computes in its weights' dtype."""
    dtype = compute_dtype(mixed_precision, device)
    return None if dtype == torch.float32 else dtype


def configure_attention(device: str | torch.device) -> None:
    """On CUDA, take cuDNN's fused attention out of SDPA's choices (module docstring); elsewhere nothing."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)
