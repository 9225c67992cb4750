"""Resuming an optimizer: its moments come from the checkpoint, its settings from the config.

A user who resumes with another learning rate or weight decay means it: the checkpoint's
moments are kept and the new settings take effect from the resumed step on, each change
logged. Another optimizer class cannot take the old moments, so that is refused.
"""
from __future__ import annotations

import logging
from typing import Any, Dict

import torch

from paragen.errors import ConfigError, DataError

logger = logging.getLogger("paragen")


def restore_optimizer(optimizer: torch.optim.Optimizer, optimizer_config: Dict[str, Any],
                      state: Dict[str, Any], path: str) -> None:
    """Load `state["optimizer"]` (from checkpoint `path`) into `optimizer`, which was built
    from `optimizer_config`, then put that config's settings back over the loaded ones."""
    stored = ((state.get("config") or {}).get("task") or {}).get("trainer") or {}
    stored_class = (stored.get("optimizer") or {"class": "AdamW"}).get("class", "AdamW")
    current_class = optimizer_config.get("class", "AdamW")
    if str(stored_class).lower() != str(current_class).lower():
        raise ConfigError(f"task.trainer.optimizer.class: {current_class}, but {path} was "
                          f"trained with {stored_class}; keep it to resume, or start over "
                          f"in another save_dir (or with task.trainer.overwrite: true)")
    fresh = [{k: v for k, v in group.items() if k != "params"}
             for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as err:
        raise DataError(f"{path}: the optimizer state does not fit this model "
                        f"({err}); start over in another save_dir") from None
    changed = []
    for group, settings in zip(optimizer.param_groups, fresh):
        for key, value in settings.items():
            old = group.get("peak_lr" if key == "lr" else key)
            if key == "lr":
                group["peak_lr"] = value  # the schedule multiplies this peak
            else:
                group[key] = value
            if old != value and _differs(old, value):
                changed.append(f"{key} {old} → {value}")
    for change in dict.fromkeys(changed):
        logger.warning("resuming with a changed optimizer setting: %s", change)


def _differs(old: Any, new: Any) -> bool:
    """Optimizer settings compare as values: (0.9, 0.98) and [0.9, 0.98] are the same."""
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return list(old) != list(new)
    return old != new
