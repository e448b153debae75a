"""What a pretraining run runs on: device and precision, seeds, optimizer and learning-rate schedule."""

import random
from typing import Optional, Tuple

import numpy
import torch

from ..errors import UserError
from ..optimizer import fused_kernel_runs
from .config import PretrainConfig

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-6  # BERT's


def select_device(gpu_id: int, mixed_precision: str = "auto") -> Tuple[torch.device, Optional[torch.dtype]]:
    """The torch device and autocast dtype (None: float32) for ``--gpu-id``/``--mixed-precision``."""
    if gpu_id is None or gpu_id < 0:
        if mixed_precision in ("bf16", "fp16"):
            raise UserError(
                f"--mixed-precision {mixed_precision} needs a GPU (--gpu-id 0); on CPU pretraining runs "
                f"in float32, so use --mixed-precision auto or no."
            )
        return torch.device("cpu"), None
    if not torch.cuda.is_available():
        raise UserError(
            f"--gpu-id {gpu_id} asks for a GPU, but PyTorch sees none (torch {torch.__version__}, "
            f"torch.cuda.is_available() is False); use --gpu-id -1 for CPU or install a CUDA build of PyTorch."
        )
    count = torch.cuda.device_count()
    if gpu_id >= count:
        raise UserError(f"--gpu-id {gpu_id} does not exist: PyTorch sees {count} GPU(s) (ids 0-{count - 1}).")
    device = torch.device("cuda", gpu_id)
    torch.cuda.set_device(device)
    if mixed_precision == "no":
        return device, None
    bf16_ok = torch.cuda.is_bf16_supported()
    if mixed_precision == "bf16" and not bf16_ok:
        raise UserError(f"GPU {gpu_id} does not support bfloat16; use --mixed-precision fp16 or no.")
    if mixed_precision == "fp16" or (mixed_precision == "auto" and not bf16_ok):
        return device, torch.float16
    return device, torch.bfloat16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model, cfg: PretrainConfig):
    """AdamW with weight decay on weight matrices only (not on biases or LayerNorm)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim < 2 or name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name
        (no_decay if skip else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel: one pass over each tensor per step (~10x torch's default path on a CPU).
    fused = fused_kernel_runs(decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=fused or None)


def lr_lambda(max_steps: int, warmup_steps: int):
    """Linear warmup from 0 over ``warmup_steps``, then linear decay to 0 at ``max_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))

    return factor
