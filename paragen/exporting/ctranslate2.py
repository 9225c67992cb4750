"""`paragen export --format ctranslate2`: an AR Transformer (`Seq2Seq`) as a CTranslate2 model.

The `ctranslate2.specs.TransformerSpec` is filled weight by weight from the PyTorch modules
(no checkpoint converter is involved), so every architecture choice is carried over:

  * pre- or post-norm per side (the final norms exist for pre-norm only, as in paragen);
  * the fused self-attention QKV projection maps to the spec's `linear[0]`, the
    cross-attention's query and fused key/value projections to `linear[0]` and `linear[1]`;
  * positions (sinusoidal or learned) are written as an explicit table, so CTranslate2 uses
    paragen's own sinusoids, position 0 for the first token of each side;
  * token embeddings are scaled by sqrt(d_model) (the spec's `scale_embeddings`);
  * the layer-norm epsilon is the modules' own (torch's 1e-5), ReLU or exact (erf) GELU;
  * tied embeddings are written once per name and aliased by CTranslate2.

Vocabularies are the tokenizers' pieces in id order. The config names the pieces of unk, bos
(the decoder start token) and eos, and `add_source_eos` makes CTranslate2 append eos to a
source as `Seq2SeqTask.encode` does: pieces from SentencePiece, without eos, translate as is.

The folder also holds the tokenizer model(s) and `export.json`, whose config runs the folder
through `CTranslate2Model` and `CTranslate2Generator` (`paragen.models.ctranslate2`, `paragen.generators.ctranslate2`), so
`paragen generate/evaluate/serve/bench --model OUT` run it like any model folder.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from paragen.decoders import TransformerDecoder
from paragen.encoders import TransformerEncoder
from paragen.errors import ConfigError
from paragen.model_folder import resolve_checkpoint
from paragen.models import Seq2Seq
from paragen.models.ctranslate2 import import_ctranslate2
from paragen.modules.layers import MultiheadAttention, TransformerLayer
from paragen.search import BeamSearch, GreedySearch

FORMAT = "ctranslate2"


def export_ctranslate2(model: str, output: str, libs: Sequence[str] = (),
                       quantize: bool = False) -> Dict[str, Any]:
    """Write the AR checkpoint `model` (folder or .pt) as a CTranslate2 model folder `output`;
    returns the manifest. `quantize` stores the weights as int8 (CTranslate2's per-row scales),
    which CTranslate2 then runs in int8 on the CPU."""
    from paragen.exporting.export import (check_output, load_float32_task, publish,
                                          runtime_config)

    ctranslate2 = import_ctranslate2()
    check_output(output)
    checkpoint = resolve_checkpoint(model)
    task = load_float32_task(checkpoint, libs)
    net = task.model.eval()
    check_exportable(net, model)
    if getattr(task, "reverse_target", False):
        raise ConfigError(f"{model}: a right-to-left model (reverse_target) would translate "
                          f"backwards in CTranslate2; use --format onnx or torchscript")
    spec = transformer_spec(ctranslate2, net, token_pieces(task.src_tokenizer, "source"),
                            token_pieces(task.tgt_tokenizer, "target"),
                            special_pieces(task.src_tokenizer, task.tgt_tokenizer))
    config = runtime_config(checkpoint)
    config["task"]["model"] = {"class": "CTranslate2Model", "path": "."}
    config["task"]["generator"] = {"class": "CTranslate2Generator",
                                   **search_settings(getattr(task.generator, "search", None))}
    manifest = {"format": FORMAT, "family": "ar", "graphs": [],
                "quantized": "int8" if quantize else None, "source": os.path.abspath(checkpoint),
                "model_class": type(net).__name__, "engine_version": ctranslate2.__version__,
                "max_positions": int(net.decoder.embed.positions.weight.size(0)),
                "config": config}

    def write_model(folder: str) -> None:  # model.bin, config.json, *_vocabulary.json
        spec.validate()
        spec.optimize(quantization="int8" if quantize else "float32")
        spec.save(folder)

    publish(output, manifest, os.path.dirname(checkpoint), write_model)
    return manifest


def check_exportable(net: nn.Module, model: str) -> None:
    """Only paragen's own AR Transformer has a CTranslate2 equivalent layer for layer."""
    if type(net) is not Seq2Seq or not isinstance(net.encoder, TransformerEncoder) \
            or not isinstance(net.decoder, TransformerDecoder) or not net.decoder.causal:
        raise ConfigError(f"{model}: --format ctranslate2 converts the AR Transformer "
                          f"(Seq2Seq with TransformerEncoder and a causal TransformerDecoder), "
                          f"not {type(net).__name__}; use --format onnx or torchscript")
    if net.encoder.dlcl is not None or net.decoder.dlcl is not None:
        raise ConfigError(f"{model}: CTranslate2 has no dynamic layer combination (dlcl: true); "
                          f"use --format onnx or torchscript")
    epsilons = {m.eps for m in net.modules() if isinstance(m, nn.LayerNorm)}
    if len(epsilons) != 1:
        raise ConfigError(f"{model}: CTranslate2 takes one layer-norm epsilon, the model has "
                          f"{sorted(epsilons)}")


def search_settings(search: Optional[nn.Module]) -> Dict[str, Any]:
    """The stored search (`SequenceGenerator`'s greedy or beam) as `CTranslate2Generator`
    settings; None: the stored generator has no such search."""
    if not isinstance(search, (GreedySearch, BeamSearch)):
        what = type(search).__name__ if search is not None else "a generator without one"
        raise ConfigError(f"task.generator.search: CTranslate2 runs greedy and beam search, "
                          f"not {what}")
    beam = isinstance(search, BeamSearch)
    return {"beam_size": search.beam_size if beam else 1,
            "lenpen": search.lenpen if beam else 1.0,
            "max_length_a": search.max_length_a, "max_length_b": search.max_length_b,
            "min_length": search.min_length}


def token_pieces(tokenizer, side: str) -> List[str]:
    """The tokenizer's pieces in id order: CTranslate2 takes and gives tokens as strings."""
    pieces = getattr(tokenizer, "pieces", None)
    if pieces is None:
        raise ConfigError(f"task.tokenizer ({side}): --format ctranslate2 needs a tokenizer "
                          f"with pieces (SentencePieceTokenizer), not {type(tokenizer).__name__}")
    if len(set(pieces)) != len(pieces):
        raise ConfigError(f"task.tokenizer ({side}): pieces are not unique, so CTranslate2 "
                          f"could not map them back to ids")
    return list(pieces)


def special_pieces(src_tokenizer, tgt_tokenizer) -> Dict[str, str]:
    """The config's unk, bos (decoder start) and eos pieces. CTranslate2 names each once for
    both sides, so the source's eos (appended by `add_source_eos`) must be the same piece."""
    tgt = tgt_tokenizer.pieces
    special = {"unk_token": tgt[tgt_tokenizer.unk_id], "bos_token": tgt[tgt_tokenizer.bos_id],
               "eos_token": tgt[tgt_tokenizer.eos_id]}
    src_eos = src_tokenizer.pieces[src_tokenizer.eos_id]
    if src_eos != special["eos_token"]:
        raise ConfigError(f"task.tokenizer: the source eos piece {src_eos!r} differs from the "
                          f"target's {special['eos_token']!r}; CTranslate2 names one eos")
    return special


def transformer_spec(ctranslate2, net: Seq2Seq, src_pieces: List[str], tgt_pieces: List[str],
                     special: Dict[str, str]):
    """A filled, unvalidated `TransformerSpec` for `net` with its vocabularies and config."""
    specs = ctranslate2.specs
    encoder, decoder = net.encoder, net.decoder
    encoder_spec = specs.TransformerEncoderSpec(
        len(encoder.layers), encoder.layers[0].self_attn.num_heads,
        pre_norm=encoder.layers[0].self_res.pre_norm,
        activation=_activation(specs, encoder.layers[0]))
    decoder_spec = specs.TransformerDecoderSpec(
        len(decoder.layers), decoder.layers[0].self_attn.num_heads,
        pre_norm=decoder.layers[0].self_res.pre_norm,
        activation=_activation(specs, decoder.layers[0]))
    _fill_inputs(encoder_spec, encoder.embed, encoder_spec.embeddings[0])
    _fill_inputs(decoder_spec, decoder.embed, decoder_spec.embeddings)
    for layer_spec, layer in zip(encoder_spec.layer, encoder.layers):
        _fill_layer(layer_spec, layer)
    for layer_spec, layer in zip(decoder_spec.layer, decoder.layers):
        _fill_layer(layer_spec, layer)
        _fill_norm(layer_spec.attention.layer_norm, layer.cross_res.norm)
        cross = layer.cross_attn
        _fill_attention(layer_spec.attention.linear, [cross.q_proj, cross.kv_proj, cross.out_proj])
    if isinstance(encoder.final_norm, nn.LayerNorm):
        _fill_norm(encoder_spec.layer_norm, encoder.final_norm)
    if isinstance(decoder.final_norm, nn.LayerNorm):
        _fill_norm(decoder_spec.layer_norm, decoder.final_norm)
    _fill_linear(decoder_spec.projection, decoder.output_projection)

    spec = specs.TransformerSpec(encoder_spec, decoder_spec)
    spec.register_source_vocabulary(src_pieces)
    spec.register_target_vocabulary(tgt_pieces)
    spec.config.unk_token = special["unk_token"]
    spec.config.bos_token = spec.config.decoder_start_token = special["bos_token"]
    spec.config.eos_token = special["eos_token"]
    spec.config.add_source_bos, spec.config.add_source_eos = False, True
    spec.config.layer_norm_epsilon = next(m.eps for m in net.modules()
                                          if isinstance(m, nn.LayerNorm))
    return spec


def _activation(specs, layer: TransformerLayer):
    """torch's F.gelu is the exact (erf) GELU: CTranslate2's GELU, not GELUTanh."""
    return {"relu": specs.Activation.RELU, "gelu": specs.Activation.GELU}[
        layer.ffn.activation.__name__]


def _fill_inputs(side_spec, embed: nn.Module, embeddings_spec) -> None:
    embeddings_spec.weight = _array(embed.tokens.weight)
    side_spec.scale_embeddings = True  # × sqrt(d_model), as TokenEmbedding.scale
    side_spec.position_encodings.encodings = _array(embed.positions.weight)


def _fill_layer(layer_spec, layer: TransformerLayer) -> None:
    """Self-attention and feed-forward, shared by encoder and decoder layers. In CTranslate2 a
    sublayer's `layer_norm` is its pre-norm input norm or its post-norm output norm, as the
    `Residual` norm in paragen."""
    attn: MultiheadAttention = layer.self_attn
    _fill_norm(layer_spec.self_attention.layer_norm, layer.self_res.norm)
    _fill_attention(layer_spec.self_attention.linear, [attn.qkv_proj, attn.out_proj])
    _fill_norm(layer_spec.ffn.layer_norm, layer.ffn_res.norm)
    _fill_linear(layer_spec.ffn.linear_0, layer.ffn.fc1)
    _fill_linear(layer_spec.ffn.linear_1, layer.ffn.fc2)


def _fill_attention(linear_specs, linears: List[nn.Linear]) -> None:
    """paragen's fused projections are laid out as CTranslate2's: q|k|v rows for
    self-attention, k|v rows for cross-attention."""
    for linear_spec, linear in zip(linear_specs, linears):
        _fill_linear(linear_spec, linear)


def _fill_linear(linear_spec, linear: nn.Linear) -> None:
    linear_spec.weight = _array(linear.weight)
    if linear.bias is not None:
        linear_spec.bias = _array(linear.bias)


def _fill_norm(norm_spec, norm: nn.LayerNorm) -> None:
    norm_spec.gamma, norm_spec.beta = _array(norm.weight), _array(norm.bias)


def _array(tensor: torch.Tensor):
    """A float32 numpy copy (weights may be memory-mapped or stored in bf16)."""
    return tensor.detach().to(torch.float32).contiguous().numpy().copy()
