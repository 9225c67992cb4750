"""AR generation: run the encoder once, then a registered search over the decoder."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
from torch import nn

import paragen.search  # noqa: F401  (registers the searches a config names)
from paragen.errors import ConfigError
from paragen.interfaces import FixedSpecialIds
from paragen.registry import build, register_generator


@register_generator
class SequenceGenerator(nn.Module):
    def __init__(self, search: Dict[str, Any] = None, *, model: nn.Module, bos_id: int,
                 eos_id: int, pad_id: int, config_path: str = "task.generator"):
        super().__init__()
        self.model = model
        self.search = build("search", search or {"class": "BeamSearch"}, f"{config_path}.search")
        self.special = {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}
        if isinstance(model, FixedSpecialIds):
            for name, expected in model.special_ids.items():
                if self.special[name] != expected:
                    fix = ("set the target tokenizer's `bos` to the model's decoder start token"
                           if name == "bos_id" else "use the tokenizer saved with the model")
                    raise ConfigError(
                        f"task.tokenizer: the target side's {name.removesuffix('_id')} is id "
                        f"{self.special[name]}, but {type(model).__name__} was trained with "
                        f"id {expected}; {fix}")

    @torch.inference_mode()
    def forward(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B,S) source ids → (B,T) output ids padded with pad (no bos/eos) and (B,) scores."""
        memory, memory_padding = self.model.encoder(src)
        return self.search(self.model.decoder, memory, memory_padding, **self.special)
