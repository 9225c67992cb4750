"""Datasets: read raw text files into indexable samples, failing loudly on bad input.

Importing this package registers its classes with `paragen.registry`.
"""
from paragen.datasets.binarized import BinarizedParallelDataset, TokenArray
from paragen.datasets.fields import (field_references, field_texts, is_plain_name, one_line,
                                     parse_field_path)
from paragen.datasets.squad import SquadDataset
from paragen.datasets.streaming import StreamingParallelDataset
from paragen.datasets.text import (JsonlDataset, ParallelTextDataset, TextDataset,
                                   decode_line, iter_line_chunks, read_lines, read_text)
from paragen.datasets.tsv import TsvDataset
from paragen.registry import register_dataset

__all__ = ["BinarizedParallelDataset", "JsonlDataset", "ParallelTextDataset", "SquadDataset",
           "StreamingParallelDataset", "TextDataset", "TokenArray", "TsvDataset", "decode_line",
           "field_references", "field_texts", "is_plain_name", "iter_line_chunks", "one_line",
           "parse_field_path", "read_lines", "read_text", "register_dataset"]
