"""A pretrained Hugging Face encoder-decoder (BART, T5, Marian ...) from a local folder as a
translation model: trained by paragen's trainer and criteria, decoded by paragen's searches
(optional extra: `pip install 'paragen[hf]'`).

    tokenizer: {class: HuggingFaceTokenizer, model: models/bart-base, bos: "</s>"}
    model: {class: HuggingFaceSeq2Seq, pretrained: models/bart-base, hf_config: {dropout: 0.1}}

The one network is offered the way the task and the searches call a `Seq2Seq`:
  model(src, prev_tokens)   logits (B,T,V) with `prev_tokens` as the decoder input (teacher
                            forcing), so the criteria work unchanged;
  model.encoder(src)        its encoder's states and the padding mask, run once per batch;
  model.decoder             a `StepDecoder`: one token per call over the network's own
                            key/value cache (`past_key_values`), rows selected and reordered
                            as the searches do with every cache.

The target side's bos must be the network's decoder start token and its eos the network's
eos (`special_ids`; the generator refuses other ids): BART starts from </s>, T5 and Marian
from <pad>, so the tokenizer is given `bos: </s>` or `bos: <pad>`. Storage follows
`HuggingFaceEncoder`: the model folder stores the architecture in place of `pretrained`.
The folder's generation settings (forced bos/eos tokens, `no_repeat_ngram_size`, its number
of beams ...) are not read: the task's search decides how to decode.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from paragen.encoders.huggingface import (architecture_to_store, check_tokenizer_fits,
                                          hf_architecture, hf_network)
from paragen.env import import_extra
from paragen.errors import DataError
from paragen.registry import register_model


def _select_rows(past: Any, rows: torch.Tensor, self_attention_only: bool) -> Any:
    """`past` with rows `rows` of its cached tensors, whatever holds them: an
    `EncoderDecoderCache` (changed in place) or, from older transformers versions, one tuple
    per layer `(self k, self v, cross k, cross v)`."""
    if isinstance(past, tuple):
        keep = 2 if self_attention_only else None
        return tuple(tuple(tensor.index_select(0, rows) if keep is None or i < keep else tensor
                           for i, tensor in enumerate(layer)) for layer in past)
    target = getattr(past, "self_attention_cache", past) if self_attention_only else past
    target.reorder_cache(rows)
    return past


class PastKeyValues:
    """The network's key/value cache, kept as the single entry of a paragen cache.

    A search drops finished sentences with `index_select(0, rows)` on every cache entry
    (`search.base.select_rows`); this selects those rows of every cached tensor."""

    def __init__(self, past: Any):
        self.past = past

    def index_select(self, dim: int, rows: torch.Tensor) -> "PastKeyValues":
        return PastKeyValues(_select_rows(self.past, rows, self_attention_only=False))


class HuggingFaceStepDecoder:
    """The network's decoder and LM head behind the `StepDecoder` interface. Not a module of
    its own: the parameters belong to `HuggingFaceSeq2Seq.model`."""

    def __init__(self, network: nn.Module, max_positions: Optional[int]):
        self.network, self.max_positions = network, max_positions
        self._outputs = import_extra("transformers", "hf", "HuggingFaceSeq2Seq").modeling_outputs
        # transformers 5 renames the cache argument and output `past_key_values` to `cache`
        # (the old name warns, and goes in 5.40).
        self._cache_name = ("cache" if "cache" in inspect.signature(network.forward).parameters
                            else "past_key_values")

    def init_cache(self) -> List[dict]:
        return [{}]

    @staticmethod
    def reorder_cache(cache: List[dict], order: torch.Tensor) -> None:
        """Beam search regroups hypotheses within each sentence: only the self-attention
        keys/values differ between a sentence's rows (the cross-attention ones are equal)."""
        if "past" in cache[0]:
            cache[0]["past"].past = _select_rows(cache[0]["past"].past, order,
                                                 self_attention_only=True)

    def __call__(self, tokens: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                 cache: Optional[List[dict]] = None) -> torch.Tensor:
        """Logits (B,T,V) for `tokens` (B,T); with `cache`, `tokens` is the newest step and
        the cache grows by it."""
        past = cache[0].get("past") if cache is not None else None
        outputs = self.network(
            encoder_outputs=self._outputs.BaseModelOutput(last_hidden_state=memory),
            attention_mask=(~memory_padding).long(), decoder_input_ids=tokens,
            use_cache=cache is not None, **{self._cache_name: None if past is None else past.past})
        if cache is not None:
            cache[0]["past"] = PastKeyValues(getattr(outputs, self._cache_name))
        return outputs.logits


@register_model
class HuggingFaceSeq2Seq(nn.Module):
    """`pretrained`: a local folder written by `save_pretrained` (config.json + weights);
    `hf_config`: changes to its config, or, without `pretrained`, a whole architecture with
    its `model_type` (trained from scratch)."""

    def __init__(self, pretrained: Optional[str] = None,
                 hf_config: Optional[Dict[str, Any]] = None, *, src_vocab_size: int,
                 tgt_vocab_size: int, pad_id: int):
        super().__init__()
        config = hf_architecture(pretrained, hf_config, "HuggingFaceSeq2Seq")
        if not getattr(config, "is_encoder_decoder", False):
            raise ValueError(f"a {config.model_type} model is not an encoder-decoder; "
                             f"HuggingFaceSeq2Seq needs one such as BART, T5 or Marian")
        self.model = hf_network("AutoModelForSeq2SeqLM", pretrained, config,
                                "HuggingFaceSeq2Seq")
        check_tokenizer_fits(config, max(src_vocab_size, tgt_vocab_size), pad_id)
        self.pad_id = pad_id
        start = self.model.generation_config.decoder_start_token_id
        start = config.decoder_start_token_id if start is None else start
        if start is None or config.eos_token_id is None:
            raise ValueError("the Hugging Face config needs decoder_start_token_id and "
                             "eos_token_id (set them in hf_config)")
        self.special_ids = {"bos_id": int(start), "eos_id": int(config.eos_token_id)}
        # Absolute position tables bound the lengths; T5's relative positions do not.
        self.max_positions = getattr(config, "max_position_embeddings", None)
        self.decoder = HuggingFaceStepDecoder(self.model, self.max_positions)

    @staticmethod
    def config_to_store(entry: Dict[str, Any]) -> Dict[str, Any]:
        """What a model folder stores of this entry (`architecture_to_store`)."""
        return architecture_to_store(entry, "HuggingFaceSeq2Seq")

    def _check_length(self, tokens: torch.Tensor, side: str) -> None:
        if self.max_positions is not None and tokens.size(1) > self.max_positions:
            raise DataError(f"{side} of {tokens.size(1)} tokens is longer than the "
                            f"{self.max_positions} positions of the Hugging Face model; lower "
                            f"the task's max_length")

    def encoder(self, src: torch.Tensor):
        """(B,S) source ids → encoder states (B,S,D) and the padding mask (B,S), True at pad."""
        self._check_length(src, "an input")
        padding = src.eq(self.pad_id)
        hidden = self.model.get_encoder()(input_ids=src, attention_mask=(~padding).long())
        return hidden.last_hidden_state, padding

    def forward(self, src: torch.Tensor, prev_tokens: torch.Tensor,
                output_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Logits (B,T,V) for the decoder input `prev_tokens` (bos + target); with
        `output_mask` (B,T) only the selected positions, as (N,V).

        Padding at the end of `prev_tokens` needs no mask: the decoder is causal, so no real
        position sees it (and T5's start token is its pad, which a mask would hide)."""
        self._check_length(src, "an input")
        self._check_length(prev_tokens, "a target")
        logits = self.model(input_ids=src, attention_mask=src.ne(self.pad_id).long(),
                            decoder_input_ids=prev_tokens, use_cache=False).logits
        return {"logits": logits if output_mask is None else logits[output_mask]}
