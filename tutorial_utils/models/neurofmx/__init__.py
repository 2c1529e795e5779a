"""A small NeuroFMX-style model (Notebook 4B), one idea per module.

tokenizers  per-unit tokens: unit + modality embeddings (spikes, calcium)
attention   cross-attention with a key-padding mask (the Perceiver's and aggregator's building block)
perceiver   Perceiver-IO: latents read the unit tokens, the injected backbone runs over time, unit queries read back
aggregator  a permutation-invariant population summary (PopT-style)
heads       behaviour, neural encoder (Poisson), contrastive (InfoNCE), forecast
losses      one weighted loss from many: fixed or uncertainty weighting
adapters    unit-ID adapter and session stitcher; adding a session, freezing the rest
model       NeuroFMXConfig and NeuroFMX, the composition
objective   MultimodalBatch and NeuroFMXObjective (what training.train optimises)
experiments data preparation, fitting, evaluation and the ablation table (notebook and benchmark)
"""
from .adapters import SessionStitcher, UnitIDAdapter, add_session, freeze_all_but_session, set_baseline_rates
from .aggregator import PopulationAggregator
from .attention import CrossAttentionBlock, cross_attention
from .heads import HEADS, BehaviourHead, ContrastiveHead, EncoderHead, ForecastHead, behaviour_positives, info_nce
from .losses import MultiTaskLoss
from .model import NeuroFMX, NeuroFMXConfig, NeuroFMXOutput
from .objective import MultimodalBatch, NeuroFMXObjective, model_inputs
from .perceiver import LatentBackbone, MeanPoolEncoder, PerceiverDecoder, PerceiverEncoder
from .tokenizers import MODALITIES, CalciumTokenizer, SpikeTokenizer

__all__ = ["HEADS", "MODALITIES", "BehaviourHead", "CalciumTokenizer", "ContrastiveHead", "CrossAttentionBlock",
           "EncoderHead", "ForecastHead", "LatentBackbone", "MeanPoolEncoder", "MultiTaskLoss", "MultimodalBatch",
           "NeuroFMX", "NeuroFMXConfig", "NeuroFMXObjective", "NeuroFMXOutput", "PerceiverDecoder",
           "PerceiverEncoder", "PopulationAggregator", "SessionStitcher", "SpikeTokenizer", "UnitIDAdapter",
           "add_session", "behaviour_positives", "cross_attention", "freeze_all_but_session", "info_nce",
           "model_inputs", "set_baseline_rates"]
