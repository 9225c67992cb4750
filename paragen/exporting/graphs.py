"""The graphs `paragen export` writes: each is a small nn.Module over a trained model's layers.

Every model becomes one to three graphs whose shapes depend only on their inputs (never on
values computed inside), which is what ONNX and TorchScript handle well:

  AR (Seq2Seq)   encoder: src (B,S) → memory_kv (B,L,2,H,S,Dh), memory_padding (B,S)
                 step:    token (N,1), memory_padding, and per decoder layer i memory_key_i,
                          memory_value_i (N,H,S,Dh), past_key_i, past_value_i (N,H,t,Dh)
                          → logits (N,V), present_key_i, present_value_i (grown to t+1)
                 block:   tokens (N,W), positions (N,W), memory_padding, and per layer the
                          memory keys/values and past_key_i, past_value_i (N,H,C,Dh) →
                          logits (N,W,V), present_key_i, present_value_i (the same C
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
sentence, so a step costs what it costs in PyTorch with a KV cache. The step and block graphs
take and give each layer's keys and values as tensors of their own, the layout of the
PyTorch decoder's cache: packed into one tensor, they had to be split apart and stacked back
on every step, copies that took 29% of the fused int8 step graph's node time in beam 4 at
batch 1. All tensors are batch-first, so the Python search (beam/greedy, unchanged) can
select and reorder rows of them.
The search, the length choice of NAT decoding and detokenization stay in Python.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from paragen.model_folder import AR_CACHE_INPUTS, ar_cache_names
from paragen.modules.layers import split_heads


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
            per_layer.append(torch.stack([split_heads(key, attn.num_heads),
                                          split_heads(value, attn.num_heads)], dim=1))
        return torch.stack(per_layer, dim=1), memory_padding


def layer_caches(kv: Tuple[torch.Tensor, ...]) -> List[dict]:
    """Per-layer inputs (`AR_CACHE_INPUTS`, layer after layer) as the decoder's cache dicts."""
    width = len(AR_CACHE_INPUTS)
    return [{key: kv[i + j] for j, (_, key) in enumerate(AR_CACHE_INPUTS)}
            for i in range(0, len(kv), width)]


def grown_caches(cache: List[dict]) -> Tuple[torch.Tensor, ...]:
    return tuple(tensor for layer in cache for tensor in (layer["k"], layer["v"]))


class ARStepGraph(nn.Module):
    """One incremental decoder step over the per-layer caches (no Python state)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, token: torch.Tensor, memory_padding: torch.Tensor, *kv: torch.Tensor
                ) -> Tuple[torch.Tensor, ...]:
        embed = self.decoder.embed
        cache = layer_caches(kv)
        position = embed.positions.weight.narrow(0, cache[0]["k"].size(2), 1)
        x = embed.tokens(token) * embed.scale + position
        logits = self.decoder.forward_embedded(x, None, memory_padding, cache=cache,
                                               single_step=True)[:, -1]
        return (logits, *grown_caches(cache))


class ARBlockGraph(nn.Module):
    """Verification of W tokens per row at the row's own positions over a fixed-capacity
    cache (`TransformerDecoder.forward_block`): the caller sizes the cache buffer (C ≥ the
    furthest position + 1), so every shape follows from the inputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor,
                memory_padding: torch.Tensor, *kv: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        cache = layer_caches(kv)
        for layer in cache:  # written in place at the block's positions
            layer["k"], layer["v"] = layer["k"].clone(), layer["v"].clone()
        logits = self.decoder.forward_block(tokens, positions, None, memory_padding, cache,
                                            extent=cache[0]["k"].size(2))
        return (logits, *grown_caches(cache))


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
    kv = []
    for i in range(layers):
        kv += [memory_kv[:, i, 0], memory_kv[:, i, 1],
               torch.randn(batch, heads, tgt_len, head_dim),
               torch.randn(batch, heads, tgt_len, head_dim)]
    token = torch.randint(4, 20, (batch, 1))
    block = torch.randint(4, 20, (batch, 3))
    positions = torch.arange(3)[None, :] + torch.arange(batch)[:, None] % (tgt_len - 2)
    return {"encoder": (src,), "step": (token, memory_padding, *kv),
            "block": (block, positions, memory_padding, *kv)}


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
           "step": {"token": {0: "batch"}, "memory_padding": {0: "batch", 1: "src_len"}},
           "block": {"tokens": {0: "batch", 1: "block"}, "positions": {0: "batch", 1: "block"},
                     "memory_padding": {0: "batch", 1: "src_len"}}},
    # the tokens-only and lattice graphs take the decoder graph's inputs
    "nat": {"encoder": _SOURCE_AXES, "decoder": _SLOT_AXES, "tokens": _SLOT_AXES},
    "dag": {"encoder": _SOURCE_AXES, "graph": _VERTEX_AXES},
    "crf": {"encoder": _SOURCE_AXES, "lattice": _SLOT_AXES},
    "classifier": {"classifier": {"src": {0: "batch", 1: "src_len"},
                                  "segments": {0: "batch", 1: "src_len"},
                                  "logits": {0: "batch"}}}}
_SLOT_INPUTS = ["src", "memory", "memory_padding", "target_padding"]
INPUT_NAMES = {"ar": {"encoder": ["src"], "step": ["token", "memory_padding"],
                      "block": ["tokens", "positions", "memory_padding"]},
               "nat": {"encoder": ["src"], "decoder": _SLOT_INPUTS, "tokens": _SLOT_INPUTS},
               "dag": {"encoder": ["src"], "graph": _SLOT_INPUTS[:3] + ["vertex_padding"]},
               "crf": {"encoder": ["src"], "lattice": _SLOT_INPUTS},
               "classifier": {"classifier": ["src", "segments"]}}  # segments: pairs only
_NAT_ENCODER_OUTPUTS = ["memory", "memory_padding", "length_logits"]
OUTPUT_NAMES = {"ar": {"encoder": ["memory_kv", "memory_padding"], "step": ["logits"],
                       "block": ["logits"]},
                "nat": {"encoder": _NAT_ENCODER_OUTPUTS, "decoder": ["tokens", "scores"],
                        "tokens": ["tokens"]},
                "dag": {"encoder": _NAT_ENCODER_OUTPUTS, "graph": ["tokens", "scores", "links"]},
                "crf": {"encoder": _NAT_ENCODER_OUTPUTS,
                        "lattice": ["candidates", "emissions", "moves", "candidate_scores"]},
                "classifier": {"classifier": ["logits"]}}


def graph_io(family: str, name: str, layers: int = 0
             ) -> Tuple[List[str], List[str], Dict[str, Dict[int, str]]]:
    """Input names, output names and dynamic axes of one graph; `layers`: the AR decoder's."""
    inputs, outputs = list(INPUT_NAMES[family][name]), list(OUTPUT_NAMES[family][name])
    axes = dict(DYNAMIC_AXES[family][name])
    if family == "ar" and name != "encoder":
        cache_inputs, cache_outputs = ar_cache_names(layers)
        inputs += cache_inputs
        outputs += cache_outputs
        past = "past_len" if name == "step" else "capacity"
        for key in cache_inputs:
            axes[key] = {0: "batch", 2: "src_len" if key.startswith("memory") else past}
    return inputs, outputs, axes
