"""`paragen export`: a trained model as ONNX or TorchScript graphs, and the runtime that runs them."""
from paragen.exporting.runtime import ExportedModel

__all__ = ["ExportedModel"]
