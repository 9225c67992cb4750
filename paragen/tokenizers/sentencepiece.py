"""SentencePiece subword tokenizer with fixed special ids (pad=0, unk=1, bos=2, eos=3).

Fixing the special ids lets models and collate functions use them without asking the tokenizer,
and makes every model trained by `learn` interchangeable at that level. A model learnt with
`mask_token=True` also has `<mask>` (id 4), the symbol masked-LM pre-training puts in place of
hidden tokens; one vocabulary then serves pre-training and fine-tuning.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import sentencepiece as spm

from paragen.errors import ConfigError, DataError
from paragen.registry import register_tokenizer

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MASK_PIECE = "<mask>"


def language_tag(language: str) -> str:
    """The piece that tells a multilingual model the target language: `<2en>` for `en`."""
    return f"<2{language}>"


def _as_list(ids: Iterable[int]) -> List[int]:
    """Accept lists, numpy arrays and tensors alike (model outputs are usually tensors)."""
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


@register_tokenizer
class SentencePieceTokenizer:
    """Wraps a trained `.model` file; batch methods use sentencepiece's own thread pool."""

    def __init__(self, model: str) -> None:
        if not os.path.isfile(model):
            raise DataError(f"{model}: SentencePiece model not found; train one with "
                            "`paragen build-tokenizer`")
        self.model = model
        try:
            self._sp = spm.SentencePieceProcessor(model_file=model)
        except (RuntimeError, OSError) as err:
            raise DataError(f"{model}: not a SentencePiece model ({' '.join(str(err).split())})"
                            ) from None
        self._special = frozenset(
            i for i in (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id()) if i >= 0)

    @property
    def fingerprint(self) -> str:
        """The first 16 hex digits of the model file's SHA-256."""
        with open(self.model, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]

    @property
    def fingerprint_source(self) -> str:
        return self.model

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def mask_id(self) -> Optional[int]:
        """The id of `<mask>`, or None for a model learnt without it."""
        piece = self._sp.piece_to_id(MASK_PIECE)  # unk's id when there is no such piece
        return None if piece == self._sp.unk_id() else piece

    @property
    def pieces(self) -> List[str]:
        """Every piece, in id order: `▁` starts a word, which whole-word masking needs."""
        return [self._sp.id_to_piece(i) for i in range(self.vocab_size)]

    @property
    def special_ids(self) -> List[int]:
        """Ids that stand for no text: control symbols (pad, bos, eos), unk and `<mask>`."""
        return [i for i in range(self.vocab_size) if self._sp.is_control(i)
                or self._sp.is_unknown(i) or i == self.mask_id]

    def encode(self, text: str) -> List[int]:
        """Subword ids without bos/eos: the task decides where those go."""
        return self._sp.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]:
        """Encode many sentences in one call, on all of sentencepiece's threads."""
        return self._sp.encode(list(texts), out_type=int, num_threads=os.cpu_count() or 1)

    def encode_with_offsets(self, texts: Sequence[str]
                            ) -> List[Tuple[List[int], List[Tuple[int, int]]]]:
        """`(ids, offsets)` per text: the same ids as `encode_batch`, and for each piece the
        `(start, end)` character offsets of its visible text in the original string.

        Why: extractive QA maps predicted token spans back to the exact context substring.
        sentencepiece reports UTF-8 byte offsets of each piece's surface, leading whitespace
        (the ▁ marker) included; offsets here are Python string indices, the whitespace
        left out, so `text[start:end]` is the piece's own characters and a span of pieces
        starts on a word, not on the space before it. A lone ▁ piece gets an empty span at
        the next character. Offsets never decrease, whatever normalisation did. Needs
        protobuf (`pip install 'paragen[qa]'`), which sentencepiece's offsets come in.
        """
        try:
            protos = self._sp.encode(list(texts), out_type="proto",
                                     num_threads=os.cpu_count() or 1)
        except ImportError as err:
            raise ConfigError(f"token offsets need protobuf: pip install 'paragen[qa]' ({err})"
                              ) from None
        result = []
        for text, proto in zip(texts, protos):
            pieces = proto.pieces
            ids = [piece.id for piece in pieces]
            data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
            # chars[b]: the character index of byte offset b (count of lead bytes before it)
            chars = np.concatenate([[0], np.cumsum((data & 0xC0) != 0x80)])
            begins = chars[[piece.begin for piece in pieces]].tolist()
            ends = chars[[piece.end for piece in pieces]].tolist()
            offsets = []
            for begin, end in zip(begins, ends):
                surface = text[begin:end]
                offsets.append((end - len(surface.lstrip()), end))
            result.append((ids, offsets))
        return result

    def decode(self, ids: Iterable[int]) -> str:
        """Text for `ids`, ignoring pad/bos/eos so padded model output decodes cleanly."""
        return self._sp.decode([i for i in _as_list(ids) if i not in self._special])

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> List[str]:
        special = self._special
        cleaned = [[i for i in _as_list(ids) if i not in special] for ids in batch]
        return self._sp.decode(cleaned, num_threads=os.cpu_count() or 1)

    @staticmethod
    def learn(inputs: List[str], model_prefix: str, vocab_size: int = 8000,
              model_type: str = "unigram", character_coverage: float = 1.0,
              input_sentence_size: int = 0, threads: int = 2, mask_token: bool = False,
              tags: Sequence[str] = ()) -> str:
        """Train a model on the text files `inputs`; return the path of `<model_prefix>.model`.

        Training writes to a temporary prefix beside the target and renames both files at the
        end, so an interrupted run never leaves a truncated model that a later run would load.
        `input_sentence_size=0` trains on every line; a positive value samples that many.
        `mask_token` adds `<mask>` as a user-defined symbol (id 4), for masked-LM pre-training.
        `tags` adds one piece per language, `<2en>` for `en` (after `<mask>`), which a
        multilingual model reads as "translate into English"; never split, never learnt from.
        """
        missing = [path for path in inputs if not os.path.isfile(path)]
        if missing:
            raise DataError(f"tokenizer training input not found: {', '.join(missing)}")
        directory = os.path.dirname(os.path.abspath(model_prefix))
        os.makedirs(directory, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=os.path.basename(model_prefix) + ".", dir=directory)
        os.close(fd)
        os.unlink(scratch)  # only its unique name is used, as the temporary prefix
        try:
            spm.SentencePieceTrainer.train(
                input=list(inputs), model_prefix=scratch, vocab_size=vocab_size,
                model_type=model_type, character_coverage=character_coverage,
                input_sentence_size=input_sentence_size, shuffle_input_sentence=True,
                num_threads=threads, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                user_defined_symbols=([MASK_PIECE] if mask_token else []) +
                [language_tag(language) for language in tags], minloglevel=2)
        except RuntimeError as err:  # e.g. vocab_size larger than the data allows
            raise DataError(f"SentencePiece training on {', '.join(inputs)} failed: {err}") from None
        else:
            os.replace(scratch + ".vocab", model_prefix + ".vocab")
            os.replace(scratch + ".model", model_prefix + ".model")
        finally:
            for suffix in (".model", ".vocab"):
                if os.path.exists(scratch + suffix):
                    os.unlink(scratch + suffix)
        return model_prefix + ".model"
