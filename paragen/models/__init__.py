"""Models: the trainable network a criterion calls. Registered with `@register_model`."""
from paragen.models.classifier import SequenceClassifier
from paragen.models.ctranslate2 import CTranslate2Model
from paragen.models.exported import ExportedModel
from paragen.models.huggingface import HuggingFaceSeq2Seq
from paragen.models.masked_lm import MaskedLM
from paragen.models.nat import CMLM, CTCNAT, GLAT, NATCRF, DATransformer
from paragen.models.seq2seq import Seq2Seq
from paragen.models.span import SpanExtractor
from paragen.registry import register_model

__all__ = ["CMLM", "CTCNAT", "CTranslate2Model", "DATransformer", "ExportedModel", "GLAT",
           "HuggingFaceSeq2Seq", "MaskedLM", "NATCRF", "Seq2Seq", "SequenceClassifier",
           "SpanExtractor", "register_model"]
