"""The course's models: plain ``nn.Module``s with shapes in their docstrings."""
from .mamba import MambaBackbone, MambaBlock, MambaConfig
from .ndt1 import NDT1, NDT1Config, TransformerCore, causal_attention_mask, sinusoidal_positional_encoding
from .selective_scan import selective_scan, selective_scan_parallel, selective_scan_sequential
from .stitch import NDT1Stitch, NDT1StitchConfig, add_session, stitch_forward, swap_session_parts, trainable_only

__all__ = ["MambaBackbone", "MambaBlock", "MambaConfig", "NDT1", "NDT1Config", "NDT1Stitch", "NDT1StitchConfig", "TransformerCore", "add_session", "causal_attention_mask",
           "selective_scan", "selective_scan_parallel", "selective_scan_sequential",
           "sinusoidal_positional_encoding", "stitch_forward", "swap_session_parts", "trainable_only"]
