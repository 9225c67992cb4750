"""The graphs `paragen export` writes: each is a small nn.Module over a trained model's layers.

Every model becomes one to three graphs whose shapes depend only on their inputs (never on
values computed inside), which is what ONNX and TorchScript handle well:

  AR (Seq2Seq)   encoder: src (B,S) → memory_kv (B,L,2,H,S,Dh), memory_padding (B,S)
                 step:    token (N,1), memory_kv, memory_padding, past_kv (N,L,2,H,t,Dh)
                          → logits (N,V), next_kv (past_kv grown to t+1)
                 block:   tokens (N,W), positions (N,W), memory_kv, memory_padding,
                          past_kv (N,L,2,H,C,Dh) → logits (N,W,V), next_kv (the same C
                          entries, the block written at its positions): speculative
                          verification, each row at its own length
  NAT (GLAT)     encoder: src (B,S) → memory (B,S,D), memory_padding (B,S), length_logits
                 decoder: src, memory, memory_padding, target_padding (B,T)
                          → tokens (B,T), token log-probs (B,T)
                 tokens:  the same inputs → tokens (B,T) only (a single pass needs no scores)
  DAG (DA-       encoder: as NAT
  Transformer)   graph:   src, memory, memory_padding, vertex_padding (B,L) → each vertex's
                          best token (B,L), its log-prob (B,L), links (B,L,L); the path
                          search stays in Python (`DAGGenerator`)
  CRF (NATCRF)   encoder: as NAT
                 lattice: the NAT decoder's inputs → candidates (B,T,k), their emissions
                          (B,T,k), moves (B,T−1,k,k), their log-probs (B,T,k); Viterbi over
                          the positions stays in Python (`slots_from_lattice`)
  classifier     classifier: src (B,S) [, segments (B,S) for pairs encoded as segments]
  (Sequence-     → logits (B, num_outputs); the pooling and the head are in the graph, the
  Classifier)    softmax and the label names stay in the task, as for the PyTorch model

The AR encoder graph precomputes every decoder layer's cross-attention keys/values once per
sentence, so a step costs what it costs in PyTorch with a KV cache. All tensors are batch-first,
so the Python search (beam/greedy, unchanged) can select and reorder rows of them.
The search, the length choice of NAT decoding and detokenization stay in Python.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn


class AREncoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        memory, memory_padding = self.model.encoder(src)
        per_layer = []
        for layer in self.model.decoder.layers:
            attn = layer.cross_attn
            key, value = attn.kv_proj(memory).chunk(2, dim=-1)
            per_layer.append(torch.stack([attn._heads(key), attn._heads(value)], dim=1))
        return torch.stack(per_layer, dim=1), memory_padding


class ARStepGraph(nn.Module):
    """One incremental decoder step over the packed caches (no Python state)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, token: torch.Tensor, memory_kv: torch.Tensor, memory_padding: torch.Tensor,
                past_kv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        embed = self.decoder.embed
        position = embed.positions.weight.narrow(0, past_kv.size(4), 1)
        x = embed.tokens(token) * embed.scale + position
        cache = [{"k": past_kv[:, i, 0], "v": past_kv[:, i, 1], "mem_k": memory_kv[:, i, 0],
                  "mem_v": memory_kv[:, i, 1]} for i in range(past_kv.size(1))]
        logits = self.decoder.forward_embedded(x, None, memory_padding, cache=cache,
                                               single_step=True)[:, -1]
        grown = torch.stack([torch.stack([c["k"], c["v"]], dim=1) for c in cache], dim=1)
        return logits, grown


class ARBlockGraph(nn.Module):
    """Verification of W tokens per row at the row's own positions over a fixed-capacity
    cache (`TransformerDecoder.forward_block`): the caller sizes the cache buffer (C ≥ the
    furthest position + 1), so every shape follows from the inputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, memory_kv: torch.Tensor,
                memory_padding: torch.Tensor, past_kv: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        cache = [{"k": past_kv[:, i, 0].clone(), "v": past_kv[:, i, 1].clone(),
                  "mem_k": memory_kv[:, i, 0], "mem_v": memory_kv[:, i, 1]}
                 for i in range(past_kv.size(1))]
        logits = self.decoder.forward_block(tokens, positions, None, memory_padding, cache,
                                            extent=past_kv.size(4))
        written = torch.stack([torch.stack([c["k"], c["v"]], dim=1) for c in cache], dim=1)
        return logits, written


class NATEncoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.encode(src)


class NATDecoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                target_padding: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.model.predict_slots(src, memory, memory_padding, target_padding)


class NATTokensGraph(NATDecoderGraph):
    """The decoder graph without the scores, for a single pass: an argmax per slot instead of
    a log-softmax and a max over the vocabulary (see `GLAT.best_tokens`)."""

    def forward(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                target_padding: torch.Tensor) -> torch.Tensor:
        return self.model.predict_slots(src, memory, memory_padding, target_padding,
                                        with_scores=False)[0]


class DAGGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                vertex_padding: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.predict_graph(src, memory, memory_padding, vertex_padding)


class CRFLatticeGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                target_padding: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.predict_lattice(src, memory, memory_padding, target_padding)


class ClassifierGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, segments: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        return self.model(src, segments)["logits"]


def example_inputs(model: nn.Module, family: str, batch: int = 3, src_len: int = 7,
                   tgt_len: int = 5) -> dict:
    """Inputs to trace each graph with; sizes ≥ 2 and distinct, so no dimension specializes."""
    src = torch.randint(4, 20, (batch, src_len))
    src[0, -2:] = model.pad_id  # a padded row, so masking paths are traced
    if family == "classifier":
        if model.segments is None:
            return {"classifier": (src,)}
        segments = (torch.arange(src_len) >= src_len // 2).long() * src.ne(model.pad_id)
        return {"classifier": (src, segments)}
    if family in ("nat", "dag", "crf"):
        memory, memory_padding, _ = model.encode(src)
        target_padding = torch.zeros(batch, tgt_len, dtype=torch.bool)
        target_padding[0, -1] = True
        slot_inputs = (src, memory, memory_padding, target_padding)  # or vertices, for a DAG
        return {name: (src,) if name == "encoder" else slot_inputs for name in GRAPHS[family]}
    memory_kv, memory_padding = AREncoderGraph(model)(src)
    layers, _, heads, _, head_dim = memory_kv.shape[1:]
    past = torch.randn(batch, layers, 2, heads, tgt_len, head_dim)
    token = torch.randint(4, 20, (batch, 1))
    block = torch.randint(4, 20, (batch, 3))
    positions = torch.arange(3)[None, :] + torch.arange(batch)[:, None] % (tgt_len - 2)
    return {"encoder": (src,), "step": (token, memory_kv, memory_padding, past),
            "block": (block, positions, memory_kv, memory_padding, past)}


GRAPHS = {"ar": {"encoder": AREncoderGraph, "step": ARStepGraph, "block": ARBlockGraph},
          "nat": {"encoder": NATEncoderGraph, "decoder": NATDecoderGraph,
                  "tokens": NATTokensGraph},
          "dag": {"encoder": NATEncoderGraph, "graph": DAGGraph},
          "crf": {"encoder": NATEncoderGraph, "lattice": CRFLatticeGraph},
          "classifier": {"classifier": ClassifierGraph}}

# Which axes of each input vary at run time (batch, source length, target/past length, vertices).
_SOURCE_AXES = {"src": {0: "batch", 1: "src_len"}}
_MEMORY_AXES = {**_SOURCE_AXES, "memory": {0: "batch", 1: "src_len"},
                "memory_padding": {0: "batch", 1: "src_len"}}
_SLOT_AXES = {**_MEMORY_AXES, "target_padding": {0: "batch", 1: "tgt_len"}}
_VERTEX_AXES = {**_MEMORY_AXES, "vertex_padding": {0: "batch", 1: "vertices"}}
DYNAMIC_AXES = {
    "ar": {"encoder": _SOURCE_AXES,
           "step": {"token": {0: "batch"}, "memory_kv": {0: "batch", 4: "src_len"},
                    "memory_padding": {0: "batch", 1: "src_len"},
                    "past_kv": {0: "batch", 4: "past_len"}},
           "block": {"tokens": {0: "batch", 1: "block"}, "positions": {0: "batch", 1: "block"},
                     "memory_kv": {0: "batch", 4: "src_len"},
                     "memory_padding": {0: "batch", 1: "src_len"},
                     "past_kv": {0: "batch", 4: "capacity"}}},
    # the tokens-only and lattice graphs take the decoder graph's inputs
    "nat": {"encoder": _SOURCE_AXES, "decoder": _SLOT_AXES, "tokens": _SLOT_AXES},
    "dag": {"encoder": _SOURCE_AXES, "graph": _VERTEX_AXES},
    "crf": {"encoder": _SOURCE_AXES, "lattice": _SLOT_AXES},
    "classifier": {"classifier": {"src": {0: "batch", 1: "src_len"},
                                  "segments": {0: "batch", 1: "src_len"},
                                  "logits": {0: "batch"}}}}
_SLOT_INPUTS = ["src", "memory", "memory_padding", "target_padding"]
INPUT_NAMES = {"ar": {"encoder": ["src"], "step": ["token", "memory_kv", "memory_padding",
                                                   "past_kv"],
                      "block": ["tokens", "positions", "memory_kv", "memory_padding",
                                "past_kv"]},
               "nat": {"encoder": ["src"], "decoder": _SLOT_INPUTS, "tokens": _SLOT_INPUTS},
               "dag": {"encoder": ["src"], "graph": _SLOT_INPUTS[:3] + ["vertex_padding"]},
               "crf": {"encoder": ["src"], "lattice": _SLOT_INPUTS},
               "classifier": {"classifier": ["src", "segments"]}}  # segments: pairs only
_NAT_ENCODER_OUTPUTS = ["memory", "memory_padding", "length_logits"]
OUTPUT_NAMES = {"ar": {"encoder": ["memory_kv", "memory_padding"], "step": ["logits", "next_kv"],
                       "block": ["logits", "next_kv"]},
                "nat": {"encoder": _NAT_ENCODER_OUTPUTS, "decoder": ["tokens", "scores"],
                        "tokens": ["tokens"]},
                "dag": {"encoder": _NAT_ENCODER_OUTPUTS, "graph": ["tokens", "scores", "links"]},
                "crf": {"encoder": _NAT_ENCODER_OUTPUTS,
                        "lattice": ["candidates", "emissions", "moves", "candidate_scores"]},
                "classifier": {"classifier": ["logits"]}}
