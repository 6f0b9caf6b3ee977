"""The layer users touch: tensors, autograd, tracing and kiln.compile."""
