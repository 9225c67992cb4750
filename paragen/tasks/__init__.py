"""Tasks: assemble components from a config and run them. Registered with `@register_task`."""
from paragen.tasks.build import build_task, load_trained_task
from paragen.tasks.classification import SequenceClassificationTask
from paragen.tasks.denoising import DenoisingTask
from paragen.tasks.masked_lm import MaskedLMTask
from paragen.tasks.qa import ExtractiveQATask
from paragen.tasks.regression import SequenceRegressionTask
from paragen.tasks.seq2seq import Seq2SeqTask
from paragen.tasks.translation import TranslationTask
from paragen.registry import register_task

__all__ = ["DenoisingTask", "ExtractiveQATask", "MaskedLMTask", "Seq2SeqTask",
           "SequenceClassificationTask", "SequenceRegressionTask", "TranslationTask", "build_task",
           "load_trained_task", "register_task"]
