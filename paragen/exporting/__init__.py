"""`paragen export`: write a trained model as ONNX or TorchScript graphs (run by
`paragen.models.exported.ExportedModel`)."""
