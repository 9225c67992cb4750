"""A Hugging Face tokenizer saved in a local folder (`save_pretrained`), behind our Tokenizer
contract, so a pretrained encoder sees exactly the ids it was trained on (optional extra:
`pip install 'paragen[hf]'`).

bos/eos are the model's own sentence markers: BERT's [CLS]/[SEP], RoBERTa's <s>/</s>. The
sentence tasks build `[bos] a [eos]` and `[bos] a [eos] b [eos]`, which is then the model's
native input: `[CLS] a [SEP] b [SEP]` for BERT. A seq2seq model's decoder starts from a token
of its own instead (its `decoder_start_token_id`: BART's </s>, T5's and Marian's <pad>), which
translation puts where bos goes: `bos: </s>` names it. Nothing is ever fetched from a model
hub: the folder must exist, and `local_files_only` stops transformers from looking elsewhere.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterable, List, Optional, Sequence

from paragen.env import import_extra
from paragen.errors import ConfigError, DataError
from paragen.registry import register_tokenizer


def _as_list(ids: Iterable[int]) -> List[int]:
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def load_hf_tokenizer(folder: str):
    """`AutoTokenizer.from_pretrained(folder)` without network access, errors in our terms."""
    transformers = import_extra("transformers", "hf", "HuggingFaceTokenizer")
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder; HuggingFaceTokenizer needs a local folder "
                        f"written by save_pretrained (nothing is downloaded)")
    try:
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        first_line = (str(err).splitlines() or [""])[0][:200]
        raise DataError(f"{folder}: cannot load a Hugging Face tokenizer ({type(err).__name__}: "
                        f"{first_line})") from None


@register_tokenizer
class HuggingFaceTokenizer:
    """`model`: the folder holding the tokenizer files (tokenizer.json, vocab.txt, ...).
    `bos`: the token that starts a sequence, when not the tokenizer's cls (else bos) token."""

    def __init__(self, model: str, bos: Optional[str] = None) -> None:
        self.model = model
        self._tokenizer = load_hf_tokenizer(model)
        tok = self._tokenizer
        if bos is not None:
            self._bos = tok.convert_tokens_to_ids(bos)
            if self._bos is None or self._bos == tok.unk_token_id and bos != tok.unk_token:
                raise ValueError(f"bos: {bos!r} is not a token of the tokenizer in {model}")
        else:
            self._bos = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        self._eos = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        missing = [name for name, value in (("pad", tok.pad_token_id), ("cls or bos", self._bos),
                                            ("sep or eos", self._eos)) if value is None]
        if missing:
            raise ConfigError(f"{model}: the tokenizer has no {' and no '.join(missing)} token; "
                              f"the tasks need pad and sentence-boundary tokens (name the "
                              f"starting one with `bos`)")

    @staticmethod
    def copy_model(source: str, target: str) -> None:
        """Write the tokenizer files of `source` (never the model weights beside them) to the
        folder `target`, replacing it: how a model folder gets its own copy."""
        parent = os.path.dirname(os.path.abspath(target))
        staging = tempfile.mkdtemp(prefix=".tokenizer-", dir=parent)
        try:
            load_hf_tokenizer(source).save_pretrained(staging)
            os.chmod(staging, 0o755)  # mkdtemp makes it private
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @property
    def pad_id(self) -> int:
        return self._tokenizer.pad_token_id

    @property
    def unk_id(self):
        return self._tokenizer.unk_token_id

    @property
    def bos_id(self) -> int:
        return self._bos

    @property
    def eos_id(self) -> int:
        return self._eos

    @property
    def vocab_size(self) -> int:
        """Every id the tokenizer can produce, added tokens included."""
        return len(self._tokenizer)

    def encode(self, text: str) -> List[int]:
        """Ids without special tokens: the task decides where bos/eos go."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]:
        """One call for the whole batch (a fast tokenizer runs it on all cores). Texts longer
        than the model's maximum are not reported here: the task truncates to max_length."""
        texts = list(texts)
        if not texts:
            return []
        return self._tokenizer(texts, add_special_tokens=False, verbose=False,
                               return_attention_mask=False,
                               return_token_type_ids=False)["input_ids"]

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_batch([ids])[0]

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> List[str]:
        """Text for each row, special tokens (pad, bos, eos) left out."""
        return self._tokenizer.batch_decode([_as_list(ids) for ids in batch],
                                            skip_special_tokens=True)
