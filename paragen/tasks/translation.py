"""Translation: a `Seq2SeqTask` whose two sides are languages (`src: de`, `tgt: en`).

Everything (data, encoding, training, BLEU/chrF, generation) is the seq2seq task's; this class
keeps translation's config spelling (`src`, `tgt`, one `max_length` for both sides), which
every translation config and model folder stores, and adds what only translation can do:
answer a long text piece by piece (`serve --long-inputs split`), because translations of a
text's pieces, joined, translate the text.
"""
from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional

from paragen.registry import register_task
from paragen.tasks.seq2seq import Seq2SeqTask


@register_task
class TranslationTask(Seq2SeqTask):
    renamed_keys = {"maxlen": "max_length"}  # older configs and model folders still load
    output_field = "translation"  # what `generate` prints of each `predict` result
    config_keys = {"source": "src", "target": "tgt", "max_source": "max_length",
            "max_target": "max_length"}

    def __init__(self, src: str, tgt: str, tokenizer: Dict[str, Any], model: Dict[str, Any],
                 data: Dict[str, Dict[str, Any]] = None, dataloader: Dict[str, Any] = None,
                 criterion: Dict[str, Any] = None, trainer: Dict[str, Any] = None,
                 generator: Dict[str, Any] = None, evaluator: Dict[str, Any] = None,
                 mode: Literal["train", "evaluate", "infer"] = "train", max_length: int = 256,
                 output_dir: Optional[str] = None, reverse_target: bool = False, *, env,
                 config: Dict[str, Any], base_dir: str = "."):
        super().__init__(tokenizer, model, source_field=src, target_field=tgt,
                         max_source_length=max_length, max_target_length=max_length, data=data,
                         dataloader=dataloader, criterion=criterion, trainer=trainer,
                         generator=generator, evaluator=evaluator, mode=mode,
                         output_dir=output_dir, reverse_target=reverse_target, env=env,
                         config=config, base_dir=base_dir)

    @property
    def max_length(self) -> int:
        """Tokens kept per side, eos included (both sides share the budget)."""
        return self.max_source_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.max_source_length = self.max_target_length = value

    def join_pieces(self, answers: List[Dict[str, str]]) -> Dict[str, str]:
        """A long input translated piece by piece: the pieces' translations, space-joined."""
        texts = (answer["translation"].strip() for answer in answers)
        return {"translation": " ".join(text for text in texts if text)}
