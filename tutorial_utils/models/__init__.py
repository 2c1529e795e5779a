"""The course's models: plain ``nn.Module``s with shapes in their docstrings."""
from .ndt1 import NDT1, TransformerCore, causal_attention_mask, sinusoidal_positional_encoding

__all__ = ["NDT1", "TransformerCore", "causal_attention_mask", "sinusoidal_positional_encoding"]
