"""Parameter groups (layer-wise learning-rate decay, no decay on biases/norms) and schedules.

The learning-rate curves are ``transformers.get_scheduler``'s. Only the step counter is
ours: it counts training **rows** seen, not optimizer steps, because the number of batches
is not known before training (batches are planned per chunk and per epoch from token
lengths, and a dask frame is read one partition at a time), while the number of rows is
(the first pass over the labels counts them).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

SCHEDULES = ("linear", "cosine", "constant")
#: ``lr_schedule`` -> the name ``transformers.get_scheduler`` knows (all with linear warmup).
SCHEDULER_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def encoder_layers(backbone: nn.Module) -> tuple[str, int]:
    """Name and length of the backbone's stack of transformer layers (the longest ModuleList)."""
    best_name, best_len = "", 0
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > best_len:
            best_name, best_len = name, len(module)
    return best_name, best_len


def parameter_depths(model: nn.Module) -> dict[str, int]:
    """Depth from the top of each parameter of a BackboneHeadModel.

    The head (``fc``) is -1; the top encoder layer and other backbone parts above the
    embeddings (pooler, final norms) are 0; layer ``i`` of ``L`` is ``L - 1 - i``; the
    embeddings are ``L`` (deepest).
    """
    stack, count = encoder_layers(model.model)
    pattern = re.compile(r"^model\." + re.escape(stack) + r"\.(\d+)\.") if stack else None
    depths = {}
    for name, _ in model.named_parameters():
        if not name.startswith("model."):
            depths[name] = -1
            continue
        match = pattern.match(name) if pattern else None
        if match:
            depths[name] = count - 1 - int(match.group(1))
        elif "embeddings" in name.split(".")[1:3] or ".embeddings." in name:
            depths[name] = count
        else:
            depths[name] = 0
    return depths


def _no_decay(name: str) -> bool:
    lower = name.lower()
    return name.endswith(".bias") or "layernorm" in lower or "layer_norm" in lower or ".norm." in lower


def parameter_groups(
    model: nn.Module,
    *,
    learning_rate: float,
    head_learning_rate: float,
    weight_decay: float,
    layerwise_lr_decay: float,
    train_backbone: bool,
) -> list[dict]:
    """AdamW groups: lr ``learning_rate * decay**depth`` for the backbone, head lr for ``fc``."""
    depths = parameter_depths(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        depth = depths[name]
        if depth >= 0 and not train_backbone:
            continue
        lr = head_learning_rate if depth < 0 else learning_rate * layerwise_lr_decay ** depth
        decay = 0.0 if _no_decay(name) else weight_decay
        key = (depth, decay == 0.0)
        group = groups.setdefault(key, {"params": [], "names": [], "lr": lr, "initial_lr": lr, "weight_decay": decay, "depth": depth})
        group["params"].append(parameter)
        group["names"].append(name)
    return [groups[key] for key in sorted(groups)]


def lr_schedule(schedule: str, warmup_ratio: float, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the learning rate at step ``0..total_steps`` (``transformers.get_scheduler``).

    Warmup is linear over the first ``round(warmup_ratio * total_steps)`` steps; then
    ``"linear"`` decays to 0, ``"cosine"`` follows half a cosine to 0, ``"constant"`` stays at 1.
    """
    from transformers import get_scheduler

    total_steps = max(int(total_steps), 1)
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = get_scheduler(SCHEDULER_NAMES[schedule], dummy, num_warmup_steps=int(round(warmup_ratio * total_steps)),
                              num_training_steps=total_steps)
    return scheduler.lr_lambdas[0]
