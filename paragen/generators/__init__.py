"""Generators: the inference-time model (encoder + search), used by evaluate/generate/serve."""
from paragen.generators.ctranslate2 import CTranslate2Generator
from paragen.generators.dag import DAGGenerator
from paragen.generators.mask_predict import MaskPredictGenerator
from paragen.generators.nat import NATGenerator
from paragen.generators.sequence import SequenceGenerator
from paragen.generators.speculative import SpeculativeGenerator
from paragen.registry import register_generator

__all__ = ["CTranslate2Generator", "DAGGenerator", "MaskPredictGenerator", "NATGenerator",
           "SequenceGenerator", "SpeculativeGenerator", "register_generator"]
