"""The network of a trained model folder on its own, without a task around it.

For components that use another model as a tool, such as an AR teacher that reranks a NAT
model's candidates: they need its weights and vocabulary, not its data or trainer.
"""
from __future__ import annotations

from torch import nn

from paragen.checkpoint import assign_weights
from paragen.config import migrate_model_config
from paragen.model_folder import open_model_folder
from paragen.registry import build
from paragen.tokenizers import build_tokenizers


def load_trained_model(path: str, config_path: str) -> nn.Module:
    """The model stored in `path` (folder or .pt), weights loaded, in eval mode, on the CPU."""
    folder = open_model_folder(path)
    task = folder.config["task"]
    src_tokenizer, tgt_tokenizer = build_tokenizers(task["tokenizer"], task["src"], task["tgt"],
                                                    folder.folder, f"{config_path}.tokenizer")
    model_config = migrate_model_config({k: v for k, v in task["model"].items() if k != "path"},
                                        f"{config_path}.model")
    if folder.exported:
        model_config["path"] = folder.folder
    model = build("model", model_config, config_path, src_vocab_size=src_tokenizer.vocab_size,
                  tgt_vocab_size=tgt_tokenizer.vocab_size, pad_id=tgt_tokenizer.pad_id)
    if folder.weights is not None:
        assign_weights(model, folder.weights, folder.checkpoint)
    return model.eval()
