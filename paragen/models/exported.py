"""An exported model folder (`paragen export`) run in place of the PyTorch model.

`ExportedModel` is a registered model class: the folder's `export.json` holds the task config
with `task.model` pointing here, so `paragen generate/evaluate/serve --model OUT` build the
usual task, tokenizer and generator around it. It offers exactly what the task calls:
  AR:  `.encoder(src)` and a `.decoder` the Python searches (greedy, beam) can drive;
  NAT: `.encode(src)`, `.predict_slots(...)`, `.class_to_length(...)` as in `GLAT` (for a
  `NATCRF`, predict_slots runs the lattice graph, then Viterbi in Python);
  DAG: `.encode(src)`, `.predict_graph(...)` as in `DATransformer` (a `DAGModel`);
  classifier: `model(src[, segments])["logits"]` as `SequenceClassifier` (classification
  and regression tasks).
ONNX graphs run on onnxruntime (extra `paragen[export]`), TorchScript ones on torch.jit.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from paragen.decoders import TransformerDecoder
from paragen.errors import ConfigError, DataError
from paragen.model_folder import (AR_CACHE_INPUTS, AR_CACHE_LAYOUT, SUFFIX, ar_cache_names,
                                   read_manifest)
from paragen.models.nat import GLAT
from paragen.models.nat.crf import slots_from_lattice
from paragen.registry import register_model


class GraphRunner:
    """Calls a named graph with torch tensors and returns torch tensors, whatever the engine.

    Inputs are named as the exporter named them, in the graph's order: an ONNX graph leaves
    out those it does not read (a CMLM's slots start from a learned vector, not from `src`),
    so only the ones it has are fed.
    """

    run_options = None  # onnxruntime.RunOptions of every ONNX call: `releasing_memory` sets it
    # A path prefix: ONNX sessions made while it is set record onnxruntime's profile of every
    # call there (`benchmarks/onnx_profile.py` sets it); None otherwise.
    profile_prefix = None
    # Whether ONNX sessions made while it is set let their worker threads spin, waiting for
    # work, between and after their operators (onnxruntime's default). Off: Python runs
    # between the calls (a search step, the next graph's inputs) and spinning workers take
    # the cores it needs. With 2 threads on 2 cores every setting measured ran faster
    # without spinning, an AR export's beam 4 at batch 1 2.4–2.7× as fast
    # (`benchmarks/onnx_spinning.py`, docs/benchmarks.md); with 1 thread there is no worker.
    spinning = False

    def __init__(self, folder: str, fmt: str, names: List[str], threads: Optional[int] = None):
        self.fmt, self.graphs = fmt, {}
        threads = threads or torch.get_num_threads()
        for name in names:
            path = os.path.join(folder, name + SUFFIX[fmt])
            if not os.path.isfile(path):
                raise DataError(f"{path}: exported graph missing")
            self.graphs[name] = self._load(path, threads)

    def _load(self, path: str, threads: int):
        if self.fmt == "torchscript":
            with warnings.catch_warnings():  # torch 2.9+ marks TorchScript as deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(path, map_location="cpu").eval()
        try:
            import onnxruntime as ort
        except ImportError:
            raise DataError(f"{path}: running ONNX needs onnxruntime "
                            f"(pip install 'paragen[export]')") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if self.spinning else "0")
        if self.profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = self.profile_prefix
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return session, {i.name for i in session.get_inputs()}

    def __call__(self, name: str, **inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.fmt == "torchscript":
            with torch.inference_mode():
                outputs = self.graphs[name](*inputs.values())
            return outputs if isinstance(outputs, tuple) else (outputs,)
        session, used = self.graphs[name]
        feed = {key: value.numpy(force=True) for key, value in inputs.items() if key in used}
        return tuple(torch.from_numpy(out) for out in session.run(None, feed, self.run_options))


@contextlib.contextmanager
def releasing_memory():
    """Within it, every ONNX graph this process runs (a model's, a drafter's, an NPD
    reranker's) hands the memory the call took back to the system at its end.

    ONNX Runtime keeps each session's memory arena at the largest size it has needed, which
    is what fast repeated calls want. A one-off pass over a whole test set (`bench` scoring
    every system it keeps loaded, untimed) would otherwise leave each session holding its
    peak, gigabytes for NPD over large batches, and a bench of many systems runs out of
    memory."""
    try:
        import onnxruntime as ort
    except ImportError:  # then no ONNX graph can run either
        yield
        return
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    GraphRunner.run_options = options
    try:
        yield
    finally:
        GraphRunner.run_options = None


class ExportedStepDecoder:
    """The AR step graph behind the decoder interface the searches use.

    The cache is the PyTorch decoder's: one dict per layer, with the layer's keys/values ("k",
    "v") and its cross-attention keys/values ("mem_k", "mem_v"), the latter split off the
    encoder's packed `memory_kv` on the first call. Beam search then reorders it with
    `TransformerDecoder.reorder_cache`, and `select_rows` drops finished rows from it.
    """

    def __init__(self, runner: GraphRunner, max_positions: int, cache_shape: List[int]):
        self.runner, self.max_positions = runner, max_positions
        self.layers, self.heads, self.head_dim = cache_shape
        # (graph input, layer, cache key) of every cache input, named once, not on every step
        names = iter(ar_cache_names(self.layers)[0])
        self.cache_inputs = [(next(names), layer, key) for layer in range(self.layers)
                             for _, key in AR_CACHE_INPUTS]

    def init_cache(self) -> List[dict]:
        return [{} for _ in range(self.layers)]

    reorder_cache = staticmethod(TransformerDecoder.reorder_cache)

    def _start(self, memory_kv: torch.Tensor, cache: List[dict], capacity: int) -> None:
        """Fill an empty cache: each layer's memory keys/values, and past keys/values with
        room for `capacity` positions."""
        past = memory_kv.new_zeros(memory_kv.size(0), self.heads, capacity, self.head_dim)
        for i, layer in enumerate(cache):
            layer.update(mem_k=memory_kv[:, i, 0].contiguous(),
                         mem_v=memory_kv[:, i, 1].contiguous(), k=past, v=past)

    def _run(self, graph: str, cache: List[dict], **inputs: torch.Tensor) -> torch.Tensor:
        inputs.update({name: cache[layer][key] for name, layer, key in self.cache_inputs})
        logits, *grown = self.runner(graph, **inputs)
        for layer, key, value in zip(cache, grown[0::2], grown[1::2]):
            layer["k"], layer["v"] = key, value
        return logits

    def __call__(self, tokens: torch.Tensor, memory_kv: torch.Tensor,
                 memory_padding: torch.Tensor, cache: List[dict]) -> torch.Tensor:
        if "k" not in cache[0]:
            self._start(memory_kv, cache, 0)
        return self._run("step", cache, token=tokens[:, -1:],
                         memory_padding=memory_padding)[:, None]

    def forward_block(self, tokens: torch.Tensor, positions: torch.Tensor,
                      memory_kv: torch.Tensor, memory_padding: torch.Tensor,
                      cache: List[dict]) -> torch.Tensor:
        """`TransformerDecoder.forward_block` through the block graph (speculative decoding):
        the cache buffers grow here, doubling, so that the graph's shapes follow its inputs."""
        extent = int(positions[:, -1].max()) + 1
        capacity = cache[0]["k"].size(2) if "k" in cache[0] else None  # (N,H,C,Dh)
        if capacity is None:
            self._start(memory_kv, cache, extent)
        elif capacity < extent:  # pad the C axis
            room = max(extent, 2 * capacity) - capacity
            for layer in cache:
                layer["k"], layer["v"] = (F.pad(layer[key], (0, 0, 0, room))
                                          for key in ("k", "v"))
        return self._run("block", cache, tokens=tokens, positions=positions,
                         memory_padding=memory_padding)


@register_model
class ExportedModel(nn.Module):
    # NAT length classes → lengths: the same rule as the model that was exported.
    class_to_length = GLAT.class_to_length
    # The exported NAT decoder graph has no input for fed-back tokens: one pass only.
    supports_refinement = False

    # The runtime arguments of every task that builds a model (translation: vocabulary sizes;
    # the sentence tasks: outputs and segments) are accepted; the graphs fix the rest.
    def __init__(self, path: str, threads: Optional[int] = None, *, pad_id: int,
                 src_vocab_size: Optional[int] = None, tgt_vocab_size: Optional[int] = None,
                 vocab_size: Optional[int] = None, num_outputs: Optional[int] = None,
                 unk_id: Optional[int] = None, num_segments: int = 0,
                 config_path: str = "task.model"):
        super().__init__()
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        manifest = read_manifest(folder)
        self.family, self.pad_id = manifest["family"], pad_id
        # the tokenizers' sizes, which the graphs were made for (a drafter must match)
        self.vocabulary_sizes = (src_vocab_size, tgt_vocab_size) \
            if src_vocab_size and tgt_vocab_size else None
        self.runner = GraphRunner(folder, manifest["format"], manifest["graphs"], threads)
        if self.family == "classifier":
            graph = (manifest["num_outputs"], manifest["segments"])
            if graph != (num_outputs, bool(num_segments)):
                raise DataError(f"{folder}: the graph gives {graph[0]} outputs "
                                f"{'with' if graph[1] else 'without'} segment ids; the task "
                                f"needs {num_outputs} {'with' if num_segments else 'without'}")
        elif self.family == "ar":
            if manifest.get("cache_layout") != AR_CACHE_LAYOUT:
                raise ConfigError(f"{folder}: this AR export keeps its cache in one packed "
                                  f"tensor (exported by an earlier version): export the "
                                  f"checkpoint again")
            self.decoder = ExportedStepDecoder(self.runner, manifest["max_positions"],
                                               manifest["cache_shape"])
        else:
            # exports made before CTC models (or their slot cap) existed do not state them;
            # those made before the CTC model was its own class call them ctc_*
            self.upsample, self.max_slots = 0, 0
            for key, value in manifest["length"].items():
                setattr(self, key.removeprefix("ctc_"), value)
            if self.family == "dag":  # only then is this a `DAGModel`, for the generators
                self.predict_graph = self._predict_graph

    def forward(self, src: torch.Tensor, segments: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        """A classifier's graph, called as `SequenceClassifier` is."""
        inputs = {"src": src} if segments is None else {"src": src, "segments": segments}
        return {"logits": self.runner("classifier", **inputs)[0]}

    def encoder(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.runner("encoder", src=src)

    def encode(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.runner("encoder", src=src)

    def predict_slots(self, src: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor,
                      target_padding: torch.Tensor, with_scores: bool = True
                      ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        inputs = {"src": src, "memory": memory, "memory_padding": memory_padding,
                  "target_padding": target_padding}
        if self.family == "crf":
            lattice = self.runner("lattice", **inputs)
            scores = lattice[3] if with_scores else None
            return slots_from_lattice(*lattice[:3], scores, target_padding, self.pad_id)
        # Exports made before the tokens-only graph existed compute the scores regardless.
        if not with_scores and "tokens" in self.runner.graphs:
            return self.runner("tokens", **inputs)[0], None
        return self.runner("decoder", **inputs)

    def _predict_graph(self, src: torch.Tensor, memory: torch.Tensor,
                       memory_padding: torch.Tensor, vertex_padding: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.runner("graph", src=src, memory=memory, memory_padding=memory_padding,
                           vertex_padding=vertex_padding)
