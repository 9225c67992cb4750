"""The contracts between module kinds, as `typing.Protocol`s.

A component satisfies a contract by having the methods and attributes below; it need not
inherit from anything. Callers check a capability with `isinstance(obj, Contract)` (all are
`runtime_checkable`), so a plug-in learns what it must provide from this file rather than
from reading the callers. docs/architecture.md shows where each contract is used.
"""
from __future__ import annotations

from typing import (Any, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple,
                    runtime_checkable)

import torch

Batch = Dict[str, Any]  # see docs/architecture.md, "Data contract"


# ---------------------------------------------------------------- data
@runtime_checkable
class Tokenizer(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int
    vocab_size: int

    def encode_batch(self, texts: Sequence[str]) -> List[List[int]]: ...

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> List[str]: ...


@runtime_checkable
class OffsetTokenizer(Protocol):
    """A tokenizer that says where each token came from: extractive QA maps a predicted
    token span back to the exact characters of the context. `encode_with_offsets` gives,
    per text, the ids `encode_batch` gives and one `(start, end)` character offset pair per
    id (`text[start:end]` is the token's text, without the whitespace before it); offsets
    never decrease."""

    def encode_with_offsets(self, texts: Sequence[str]
                            ) -> List[Tuple[List[int], List[Tuple[int, int]]]]: ...


@runtime_checkable
class FingerprintedTokenizer(Protocol):
    """A tokenizer that can tell its model file apart from others (binarized data records it,
    and is refused with another tokenizer)."""

    fingerprint: str  # a short hash of the model
    fingerprint_source: str  # where the model came from, for messages


@runtime_checkable
class ColumnDataset(Protocol):
    """A dataset that hands out one language's lines at once (no per-sample dicts)."""

    def lines(self, field: str) -> List[str]: ...


@runtime_checkable
class TokenArrayDataset(Protocol):
    """A binarized dataset: token ids stay on disk and are read per batch."""

    def token_array(self, field: str) -> Any: ...


@runtime_checkable
class StreamingDataset(Protocol):
    """A corpus read lazily, split between readers (ranks × workers); `streaming` is True."""

    streaming: bool

    def iter_pairs(self, reader: int, readers: int) -> Iterator[Tuple[int, Dict[str, str]]]: ...


@runtime_checkable
class Sampler(Protocol):
    def batches(self, lengths: Sequence[int], epoch: int = 0) -> List[List[int]]: ...


@runtime_checkable
class BatchLoader(Protocol):
    """What the trainer and the task iterate. `rank_local`: under DDP each rank yields its own
    batches (streaming), instead of every rank seeing the same list and taking a slice."""

    rank_local: bool

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterator[Batch]: ...

    def num_batches(self, epoch: int) -> Optional[int]: ...


# ---------------------------------------------------------------- models
@runtime_checkable
class NATModel(Protocol):
    """What `NATGenerator`, the glancing losses and `paragen export` need of a parallel model.

    `upsample` > 0: a model with upsample × source length slots (at most `max_slots`, when
    that is not 0) and no length classifier (`CTCNAT`); 0: a length-predicting model.
    `supports_refinement`: `predict_slots` accepts fed-back tokens (`given`, `given_mask`).
    A length-predicting model also maps length classes to lengths (`class_to_length`).
    """

    upsample: float
    max_slots: int
    supports_refinement: bool
    max_length: int

    def encode(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def predict_slots(self, src: torch.Tensor, memory: torch.Tensor,
                      memory_padding: torch.Tensor, target_padding: torch.Tensor,
                      *args: Any, **kwargs: Any
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]: ...


@runtime_checkable
class DAGModel(Protocol):
    """What `DAGGenerator` needs of a DA-Transformer (or of its export): upsample × source
    length vertices (at most `max_slots`, when that is not 0) and, in one pass,
    `predict_graph(src, memory, memory_padding, vertex_padding (B,L))` → each vertex's best
    token (B,L), its log-probability (B,L) and the log link probabilities (B,L,L). The path
    search over them stays with the generator."""

    upsample: float
    max_slots: int

    def encode(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def predict_graph(self, src: torch.Tensor, memory: torch.Tensor,
                      memory_padding: torch.Tensor, vertex_padding: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class TokenTypeEncoder(Protocol):
    """An encoder with segment (token type) embeddings of its own, as a pretrained BERT has:
    a sentence-pair model passes it segment ids (`encoder(src, token_types=segments)`) rather
    than adding segment vectors of its own, so the pretrained embeddings are the ones used."""

    num_token_types: int


@runtime_checkable
class StepDecoder(Protocol):
    """An AR decoder a search can drive one token at a time over a key/value cache.

    `max_positions`: the size of its position table (outputs are clamped to fit), None for a
    decoder without one (relative positions)."""

    max_positions: Optional[int]

    def init_cache(self) -> List[dict]: ...

    def reorder_cache(self, cache: List[dict], order: torch.Tensor) -> None: ...


@runtime_checkable
class FixedSpecialIds(Protocol):
    """An AR model pretrained around fixed ids (a Hugging Face seq2seq model: its decoder
    start token and eos). `special_ids` maps `bos_id`/`eos_id` to them; the generator refuses
    a target tokenizer that gives other ids, which would train and decode the model from a
    start token it was never trained on."""

    special_ids: Dict[str, int]


# ---------------------------------------------------------------- training
@runtime_checkable
class ProgressAware(Protocol):
    """A criterion whose behaviour follows training progress (GLAT's glancing ratio)."""

    def set_progress(self, step: int, total_steps: Optional[int]) -> None: ...


@runtime_checkable
class LRSchedule(Protocol):
    """`needs_plan`: the schedule ends where training ends, so the trainer must know the number
    of updates (max_steps, max_epochs or max_minutes)."""

    needs_plan: bool

    def apply(self, optimizer: torch.optim.Optimizer, step: int,
              planned_steps: Optional[int] = None) -> float: ...


@runtime_checkable
class Metric(Protocol):
    """Text metrics take detokenized strings; label and correlation metrics take tensors (or
    lists) of label indices or values. Higher is better; the string is a signature."""

    def compute(self, hypotheses: Sequence[Any], references: Sequence[Any]
                ) -> Tuple[float, str]: ...


# ---------------------------------------------------------------- tasks
@runtime_checkable
class Predictor(Protocol):
    """A task `generate` can drive: one answer (a dict) per input line, in input order.
    `output_field` names the part that plain-text output prints (`translation`, `label`);
    `--format jsonl` prints the whole dict. `first_line` numbers the lines in errors."""

    output_field: str

    def predict(self, lines: List[str], first_line: int = 1) -> List[Dict[str, Any]]: ...


@runtime_checkable
class ServedPredictor(Predictor, Protocol):
    """A Predictor `paragen serve` can answer HTTP requests with. What differs between tasks
    is stated here, so the server has no per-task branches.

    `input_tokens(lines)`: each line's length in the units `max_input_tokens` bounds (text
    tokens, special tokens not counted), in one call; a line the task cannot read (a pair
    without its tab) is an `InputError`, so the server refuses that request alone (422)
    before it can fail a batch it shares with others.
    `max_input_tokens`: the most one input may have; the server refuses a longer one (413)
    rather than let the task cut it and answer for its first part only. None: no limit.
    `plain_answers`: answer each input with its `output_field` alone (a translation string)
    rather than the whole dict (a label with its probabilities).
    `describe()`: what `GET /v1/models` says about the task (languages, labels, columns).
    """

    max_input_tokens: Optional[int]
    plain_answers: bool

    def input_tokens(self, lines: List[str], first_line: int = 1) -> List[int]: ...

    def describe(self) -> Dict[str, Any]: ...


@runtime_checkable
class PieceJoiner(ServedPredictor, Protocol):
    """A task whose answer to a long text is the answers to its pieces, joined (translation):
    what `serve --long-inputs split` needs. A label or an answer span of a whole text cannot be
    put together from its pieces, so other tasks refuse the option."""

    def join_pieces(self, answers: List[Dict[str, Any]]) -> Dict[str, Any]: ...


@runtime_checkable
class Translator(Protocol):
    """Raw sentences in, output sentences out, in input order: what `distill` and `bench`
    drive."""

    def translate(self, lines: List[str]) -> List[str]: ...


def missing_members(cls: type, contract: type) -> List[str]:
    """The members of `contract` (a Protocol) that class `cls` lacks, in declaration order.

    Verbs check a task's class this way before its weights load; `isinstance` needs an
    instance. Members must therefore be class-level (methods, properties, class attributes).
    """
    names: Dict[str, None] = {}
    for base in reversed(contract.__mro__):
        if base is Protocol or not getattr(base, "_is_protocol", False):
            continue
        for name in (*vars(base).get("__annotations__", {}), *vars(base)):
            if not name.startswith("_"):
                names[name] = None
    return [name for name in names if not hasattr(cls, name)]
