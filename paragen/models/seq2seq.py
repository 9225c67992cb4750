"""Encoder-decoder model: the AR Transformer (and the base that NAT models plug into).

    tokens ─ encoder ─ memory ─┐
    prev_tokens ─ decoder ─────┴→ logits

`share_embedding` follows ParaGen: `all` ties source, target and output embeddings (one joint
vocabulary), `decoder` ties target and output only, `none` ties nothing.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

import torch
from torch import nn

import paragen.decoders  # noqa: F401  (registers the decoders a config names)
import paragen.encoders  # noqa: F401  (registers the encoders a config names)
from paragen.checkpoint import load_model_weights
from paragen.modules.layers import make_embedding
from paragen.registry import build, register_model


def build_encoder_decoder(encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int,
                          share_embedding: str, src_vocab_size: int, tgt_vocab_size: int,
                          pad_id: int, config_path: str) -> Tuple[nn.Module, nn.Module]:
    """The encoder and decoder every model shares, with embeddings tied as configured."""
    if share_embedding == "all" and src_vocab_size != tgt_vocab_size:
        raise ValueError(f"{config_path}.share_embedding: 'all' needs one joint vocabulary, "
                         f"got sizes {src_vocab_size} and {tgt_vocab_size}")
    for name, cfg in (("encoder", encoder), ("decoder", decoder)):
        if cfg.get("d_model", d_model) != d_model:
            raise ValueError(f"{config_path}.{name}.d_model: {cfg['d_model']} differs from "
                             f"{config_path}.d_model {d_model}")
    shared = make_embedding(src_vocab_size, d_model, pad_id) if share_embedding == "all" else None
    built_encoder = build("encoder", {**encoder, "d_model": d_model}, f"{config_path}.encoder",
                          vocab_size=src_vocab_size, pad_id=pad_id, embed=shared)
    built_decoder = build("decoder", {**decoder, "d_model": d_model}, f"{config_path}.decoder",
                          vocab_size=tgt_vocab_size, pad_id=pad_id, embed=shared,
                          share_output_embedding=share_embedding != "none")
    return built_encoder, built_decoder


@register_model
class Seq2Seq(nn.Module):
    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any], d_model: int = 512,
                 share_embedding: Literal["all", "decoder", "none"] = "all",
                 path: Optional[str] = None, *, src_vocab_size: int, tgt_vocab_size: int,
                 pad_id: int, config_path: str = "task.model"):
        super().__init__()
        self.pad_id = pad_id
        self.encoder, self.decoder = build_encoder_decoder(
            encoder, decoder, d_model, share_embedding, src_vocab_size, tgt_vocab_size, pad_id,
            config_path)
        if path:
            load_model_weights(self, path)

    def forward(self, src: torch.Tensor, prev_tokens: torch.Tensor,
                output_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Logits (B,T,V); with `output_mask` (B,T) only the selected positions, as (N,V)."""
        memory, memory_padding = self.encoder(src)
        if output_mask is None:
            return {"logits": self.decoder(prev_tokens, memory, memory_padding)}
        hidden = self.decoder(prev_tokens, memory, memory_padding, return_hidden=True)
        return {"logits": self.decoder.output_projection(hidden[output_mask])}
