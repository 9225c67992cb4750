"""A pretrained Hugging Face encoder (BERT, RoBERTa, ELECTRA ...) from a local folder, behind
the encoder contract: `(B,S) ids → (hidden (B,S,D), padding (B,S) True at pad)`, as
`TransformerEncoder` returns, so any model that builds an encoder can fine-tune one
(optional extra: `pip install 'paragen[hf]'`).

    encoder: {class: HuggingFaceEncoder, pretrained: models/bert-base-uncased,
              hf_config: {hidden_dropout_prob: 0.2}}   # optional changes to its config.json

Training starts from the weights in `pretrained` (a folder written by `save_pretrained`;
nothing is ever downloaded). The model folder paragen writes needs that folder no more: when
training starts, the stored config gets `hf_config` = the whole architecture instead of
`pretrained` (`config_to_store`), so every verb that reads the model folder builds the same
network from the config and takes every weight from paragen's own checkpoint. Without
`pretrained`, `hf_config` (with a `model_type`) builds a randomly initialised network of that
architecture.

BERT's pooler is dropped: the model pools on its own, and weights that get no gradient would
only cost memory (and make DDP complain about unused parameters).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from paragen.env import import_extra
from paragen.errors import DataError
from paragen.registry import register_encoder

# What `to_dict()` holds that describes this run, not the architecture (and would leak paths).
_NOT_ARCHITECTURE = ("_name_or_path", "transformers_version")


def hf_architecture(pretrained: Optional[str], hf_config: Optional[Dict[str, Any]],
                    needed_by: str = "HuggingFaceEncoder"):
    """The Hugging Face config: `pretrained`'s config.json with `hf_config` changes applied,
    else `hf_config` alone (it must name a `model_type`). `needed_by` names the component in
    messages."""
    transformers = import_extra("transformers", "hf", needed_by)
    settings = dict(hf_config or {})
    if not pretrained:
        model_type = settings.pop("model_type", None)
        if not model_type:
            raise ValueError("give `pretrained` (a local folder written by save_pretrained) or "
                             "`hf_config` with a `model_type` (bert, roberta, bart, t5 ...)")
        try:
            return transformers.AutoConfig.for_model(model_type, **settings)
        except ValueError as err:
            raise ValueError(f"hf_config.model_type: {str(err).splitlines()[0][:200]}") from None
    if not os.path.isdir(pretrained):
        raise DataError(f"{pretrained}: no such folder; {needed_by} needs a local folder "
                        f"written by save_pretrained (nothing is downloaded)")
    try:
        config, unused = transformers.AutoConfig.from_pretrained(
            pretrained, local_files_only=True, return_unused_kwargs=True, **settings)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{pretrained}: cannot read a Hugging Face config ({type(err).__name__}: "
                        f"{(str(err).splitlines() or [''])[0][:200]})") from None
    if unused:  # transformers would keep a misspelt key silently
        raise ValueError(f"hf_config.{sorted(unused)[0]}: not a setting of "
                         f"{type(config).__name__} ({pretrained}/config.json)")
    return config


def hf_network(auto_class: str, pretrained: Optional[str], config, needed_by: str) -> nn.Module:
    """`transformers.<auto_class>` with `pretrained`'s weights, or randomly initialised from
    `config` without it; always in fp32 (a folder saved in half precision still trains in
    fp32)."""
    transformers = import_extra("transformers", "hf", needed_by)
    factory = getattr(transformers, auto_class)
    if not pretrained:
        return factory.from_config(config).float()
    try:
        return factory.from_pretrained(pretrained, config=config, local_files_only=True).float()
    except (OSError, ValueError) as err:
        raise DataError(f"{pretrained}: cannot load the model weights "
                        f"({(str(err).splitlines() or [''])[0][:200]})") from None


def architecture_to_store(entry: Dict[str, Any], needed_by: str) -> Dict[str, Any]:
    """The config entry a model folder stores: `pretrained` replaced by the whole
    architecture it holds (changes applied), so loading needs neither that folder nor its
    weights. Plain values only, so checkpoints still load with `weights_only=True`."""
    if not entry.get("pretrained"):
        return entry
    config = hf_architecture(entry["pretrained"], entry.get("hf_config"), needed_by)
    stored = {key: value for key, value in entry.items() if key != "pretrained"}
    stored["hf_config"] = {key: value for key, value in config.to_dict().items()
                           if key not in _NOT_ARCHITECTURE}
    return stored


def check_tokenizer_fits(config, vocab_size: int, pad_id: int) -> None:
    """The tokenizer's ids must be ones the model embeds, and its padding the model's."""
    if vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer has {vocab_size} ids but the model embeds "
                         f"{config.vocab_size}: use the tokenizer saved with this model")
    model_pad = getattr(config, "pad_token_id", None)
    if model_pad is not None and model_pad != pad_id:
        raise ValueError(f"the tokenizer pads with id {pad_id}, the model with "
                         f"{model_pad}: use the tokenizer saved with this model")


@register_encoder
class HuggingFaceEncoder(nn.Module):
    """`d_model`, when a parent passes one, must equal the model's hidden size: the width
    comes from the pretrained network (a classifier's `d_model: auto` takes it from here)."""

    def __init__(self, pretrained: Optional[str] = None,
                 hf_config: Optional[Dict[str, Any]] = None, d_model: Optional[int] = None, *,
                 vocab_size: int, pad_id: int):
        super().__init__()
        config = hf_architecture(pretrained, hf_config)
        self.model = hf_network("AutoModel", pretrained, config, "HuggingFaceEncoder")
        if isinstance(getattr(self.model, "pooler", None), nn.Module):
            self.model.pooler = None
        self.d_model, self.pad_id = int(config.hidden_size), pad_id
        if d_model is not None and d_model != self.d_model:
            raise ValueError(f"d_model {d_model} differs from the hidden size {self.d_model} of "
                             f"the Hugging Face model; set the model's d_model to "
                             f"{self.d_model} or auto")
        check_tokenizer_fits(config, vocab_size, pad_id)
        # Segment (token type) embeddings of its own: a sentence-pair model passes segment
        # ids as `token_types` rather than adding vectors (interfaces.TokenTypeEncoder).
        self.num_token_types = int(getattr(config, "type_vocab_size", 0) or 0)
        self.max_positions = self._max_positions(config)

    def _max_positions(self, config) -> Optional[int]:
        """Longest input the position embeddings cover; RoBERTa-style models number positions
        from pad_id + 1, so they lose that many."""
        positions = getattr(config, "max_position_embeddings", None)
        if positions is None:
            return None
        embeddings = getattr(self.model, "embeddings", None)
        if getattr(embeddings, "padding_idx", None) is not None:
            positions -= embeddings.padding_idx + 1
        return positions

    @staticmethod
    def config_to_store(entry: Dict[str, Any]) -> Dict[str, Any]:
        """What a model folder stores of this entry (`architecture_to_store`)."""
        return architecture_to_store(entry, "HuggingFaceEncoder")

    def forward(self, src: torch.Tensor, added: Optional[torch.Tensor] = None,
                token_types: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B,S) ids → last hidden states (B,S,D) and the padding mask (B,S), True at padding.

        `token_types` (B,S) are segment ids for the model's own token-type embeddings;
        `added` (B,S,D) is summed with the token embeddings (a caller's own segment vectors,
        as for `TransformerEncoder`).
        """
        if self.max_positions is not None and src.size(1) > self.max_positions:
            raise DataError(f"an input of {src.size(1)} tokens is longer than the "
                            f"{self.max_positions} positions of the Hugging Face encoder; "
                            f"lower the task's max_length")
        padding = src.eq(self.pad_id)
        inputs = {"attention_mask": (~padding).long(), "token_type_ids": token_types}
        if added is None:
            inputs["input_ids"] = src
        else:
            inputs["inputs_embeds"] = self.model.get_input_embeddings()(src) + added
        return self.model(**inputs).last_hidden_state, padding
