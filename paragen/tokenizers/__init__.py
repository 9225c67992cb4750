"""Tokenizers: text ↔ integer ids. Importing this package registers its classes."""
from paragen.tokenizers.build import build_tokenizers
from paragen.tokenizers.huggingface import HuggingFaceTokenizer
from paragen.tokenizers.sentencepiece import SentencePieceTokenizer
from paragen.registry import register_tokenizer

__all__ = ["HuggingFaceTokenizer", "SentencePieceTokenizer", "build_tokenizers",
           "register_tokenizer"]
