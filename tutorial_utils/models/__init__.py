"""The course's models: plain ``nn.Module``s with shapes in their docstrings.

The scans live in ``tutorial_utils.models.selective_scan`` (import them from there: the module and
its dispatch function share the name, so they are not re-exported here).
"""
from .mamba import MambaBackbone, MambaBlock, MambaConfig
from .ndt1 import NDT1, NDT1Config, TransformerCore, causal_attention_mask, sinusoidal_positional_encoding
from .stitch import (NDT1Stitch, NDT1StitchConfig, add_session, start_at_mean_rates, stitch_forward, swap_session_parts,
                     trainable_only)

__all__ = ["MambaBackbone", "MambaBlock", "MambaConfig", "NDT1", "NDT1Config", "NDT1Stitch", "NDT1StitchConfig", "TransformerCore", "add_session", "causal_attention_mask",
           "sinusoidal_positional_encoding", "start_at_mean_rates", "stitch_forward", "swap_session_parts", "trainable_only"]
