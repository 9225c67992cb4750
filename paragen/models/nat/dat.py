"""DA-Transformer, the directed acyclic Transformer (Huang et al., ICML 2022).

    src ─ encoder ─ memory ──────────────────┐
    copy(src → upsample × |src| vertices) ───┴─ decoder(causal=False) ─ hidden ─┬─ a token distribution per vertex
                                                                                └─ links: P(next vertex u | v), u > v

The decoder's vertices and learned links between them form a DAG; a sentence is one path
from the first vertex to the last, one token per vertex visited. Training sums the
reference's probability over every path of its length (`paragen.modules.dag`, a log-space
dynamic program in PyTorch; `DAGLoss`), so the model need not commit to one alignment, and
glancing shows the reference tokens along the model's best path. Decoding
(`DAGGenerator`) picks a path by greedy, lookahead or joint-Viterbi search: one decoder pass
and a small graph search, as cheap as GLAT's single pass.

Links are scaled dot products of two projections of the vertex states, masked to the later
vertices of the same sentence and normalised per vertex (`normalize_links`).
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

import torch
from torch import nn

from paragen.checkpoint import load_model_weights
from paragen.models.nat.base import NATBase
from paragen.modules.dag import dag_best_path, normalize_links, path_to_vertex_targets
from paragen.registry import register_model


@register_model
class DATransformer(NATBase):
    supports_refinement = False  # a path is chosen once; there is nothing to feed back

    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int = 512,
                 share_embedding: Literal["all", "decoder", "none"] = "all",
                 decoder_input: Literal["uniform_copy", "unk"] = "uniform_copy",
                 upsample: float = 4.0, max_slots: int = 0, max_length: int = 256,
                 path: Optional[str] = None, *, src_vocab_size: int, tgt_vocab_size: int,
                 pad_id: int, config_path: str = "task.model"):
        super().__init__(encoder, decoder, d_model, share_embedding, decoder_input, max_length,
                         src_vocab_size, tgt_vocab_size, pad_id, config_path)
        self.use_upsampled_slots(upsample, max_slots, config_path)
        self.link_query = nn.Linear(d_model, d_model)
        self.link_key = nn.Linear(d_model, d_model)
        if path:
            load_model_weights(self, path)

    def link_log_probs(self, hidden: torch.Tensor, slot_padding: torch.Tensor) -> torch.Tensor:
        """(B,L,L) log P(next = u | v), −inf unless v < u < the sentence's vertex count."""
        query, key = self.link_query(hidden), self.link_key(hidden)
        scores = torch.bmm(query, key.transpose(1, 2)).float() / query.size(-1) ** 0.5
        return normalize_links(scores, (~slot_padding).sum(-1))

    def target_log_probs(self, hidden: torch.Tensor, target: torch.Tensor,
                         logp: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B,L,M) log p_v(y_i): each vertex's log-probability of each reference token
        (gathered from `logp` (B,L,V), the vertices' log-probabilities, when given)."""
        if logp is None:
            logp = torch.log_softmax(self.output_logits(hidden).float(), dim=-1)
        return logp.gather(-1, target[:, None, :].expand(-1, logp.size(1), -1))

    def glance_targets(self, hidden: torch.Tensor, slot_padding: torch.Tensor,
                       target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As `NATBase.glance_targets`, with one output-layer pass for both the predictions
        and the path search (the output layer is most of a DA-Transformer's cost)."""
        logp = torch.log_softmax(self.output_logits(hidden).float(), dim=-1)
        return (logp.argmax(-1),
                *self.align(hidden, slot_padding, target, self.target_log_probs(hidden, target,
                                                                                logp)))

    def align(self, hidden: torch.Tensor, slot_padding: torch.Tensor, target: torch.Tensor,
              token_logp: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reference tokens on the vertices of the best path; the other vertices have none.
        `token_logp`: `target_log_probs`, if already computed."""
        vertex_lengths, target_lengths = (~slot_padding).sum(-1), target.ne(self.pad_id).sum(-1)
        if token_logp is None:
            token_logp = self.target_log_probs(hidden, target)
        path, feasible = dag_best_path(token_logp,
                                       self.link_log_probs(hidden, slot_padding),
                                       vertex_lengths, target_lengths)
        tokens, on_path = path_to_vertex_targets(path, target, target_lengths,
                                                 slot_padding.size(1), self.pad_id)
        return tokens, on_path & feasible[:, None]

    def predict_graph(self, src: torch.Tensor, memory: torch.Tensor,
                      memory_padding: torch.Tensor, vertex_padding: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the path searches need, in one pass: each vertex's best token (B,L), its
        log-probability (B,L) and the links (B,L,L). Shapes follow the inputs only, so an
        exported graph can compute it and leave the search to Python."""
        hidden = self.predict_hidden(src, memory, memory_padding, vertex_padding)
        tokens, scores = self.best_tokens(hidden, vertex_padding)
        return tokens, scores, self.link_log_probs(hidden, vertex_padding)
