"""Decoding a `DATransformer`: one decoder pass over upsample × source length vertices, then a
path through the DAG (`paragen.generators.dag_search`), all batched.

`strategy`: `greedy` follows the most probable link from each vertex; `lookahead` (the
DA-Transformer default) weighs each next vertex's token confidence by `beta` as well;
`viterbi` finds the path with the best total log-probability divided by its length^`beta`
(Shao et al. 2022), exactly. Output tokens are the best token of each vertex on the path,
the end-of-sentence token dropped.
"""
from __future__ import annotations

from typing import Literal, Optional, Tuple

import torch
from torch import nn

from paragen.errors import ConfigError
from paragen.generators.dag_search import dag_greedy, dag_lookahead, dag_viterbi
from paragen.generators.nat import left_align
from paragen.interfaces import DAGModel
from paragen.models.nat.base import padding_from_counts, upsampled_slot_counts
from paragen.registry import register_generator

SEARCHES = {"greedy": dag_greedy, "lookahead": dag_lookahead, "viterbi": dag_viterbi}


@register_generator
class DAGGenerator(nn.Module):
    def __init__(self, strategy: Literal["greedy", "lookahead", "viterbi"] = "lookahead",
                 beta: float = 1.0, *, model: nn.Module, bos_id: int, eos_id: int, pad_id: int,
                 config_path: str = "task.generator"):
        super().__init__()
        if not isinstance(model, DAGModel):
            raise ConfigError(f"{config_path}.class: DAGGenerator decodes a DATransformer (or "
                              f"its export), got {type(model).__name__}")
        self.model, self.strategy, self.beta = model, strategy, beta
        self.eos_id, self.pad_id = eos_id, pad_id

    @torch.inference_mode()
    def forward(self, src: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B,S) source ids → (B,T) output ids padded with pad (eos removed); Viterbi also
        returns its length-normalised path scores (B,), the others None."""
        model = self.model
        memory, memory_padding, _ = model.encode(src)
        counts = upsampled_slot_counts(src, self.pad_id, model.upsample, model.max_slots)
        vertex_padding = padding_from_counts(counts.clamp_min(1))
        tokens, token_scores, links = model.predict_graph(src, memory, memory_padding,
                                                          vertex_padding)
        search = SEARCHES[self.strategy]
        options = {} if self.strategy == "greedy" else {"beta": self.beta}
        output = search(token_scores, tokens, links, (~vertex_padding).sum(-1),
                        pad_id=self.pad_id, **options)
        output, scores = output if isinstance(output, tuple) else (output, None)
        output = output.masked_fill(output.eq(self.eos_id), self.pad_id)
        return left_align(output, self.pad_id), scores
