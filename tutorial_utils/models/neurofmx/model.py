"""NeuroFMX, small: per-unit tokens -> Perceiver latents -> injected backbone over time -> heads.

Time is cut into P = T / w patches of w = ``patch_bins`` bins; one token per unit per patch.

    spikes (B, T, N_in) ──SpikeTokenizer──┐  (+ unit embedding, + modality embedding)
    calcium (B, T, N_in) ─CalciumTokenizer┴─▶ tokens (B, P, M·N_in, D), padding mask (B, M·N_in)
      ──SessionStitcher──▶ PerceiverEncoder ──▶ latents (B, P, L, D)
      ──LatentBackbone (injected transformer / SSM over the P patches)──▶ latents (B, P, L, D)
      ──PerceiverDecoder (one query per unit, N_out of them)──▶ unit states (B, P, N_out, D)
    unit states ──EncoderHead──▶ log-rates (B, T, N_out);  ──ForecastHead──▶ (B, P, N_out, k)
    unit states ──PopulationAggregator──▶ (+ mean of latents) population (B, P, D) ──▶ BehaviourHead (B, T, d), ContrastiveHead (B, P, E)

Trials of several sessions can share a batch: ``session`` (B,) picks each trial's unit-ID adapter
(its units' embeddings) and stitcher entry; narrower sessions are zero-padded and masked. A
modality may be absent for some trials (``spike_present`` / ``calcium_present``) or for the whole
batch (pass None): its tokens are masked, and the latents read whatever is there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .adapters import SessionStitcher, UnitIDAdapter
from .aggregator import PopulationAggregator
from .heads import HEADS, BehaviourHead, ContrastiveHead, EncoderHead, ForecastHead
from .losses import MultiTaskLoss
from .perceiver import LatentBackbone, MeanPoolEncoder, PerceiverDecoder, PerceiverEncoder
from .tokenizers import MODALITIES, CalciumTokenizer, SpikeTokenizer


@dataclass
class NeuroFMXConfig:
    """Everything but the backbone needed to rebuild a :class:`NeuroFMX` (the backbone is injected).

    n_inputs / n_outputs: units fed in / predicted, per session (inputs are the first outputs;
        NLB's held-out units are outputs only). n_outputs defaults to n_inputs.
    modalities: which tokenizers exist ("spikes", "calcium").
    patch_bins: bins per token (time patch); forecast_bins: bins hidden at the end and forecast (a multiple).
    use_perceiver / use_aggregator: the pieces the ablations remove.
    positions: the backbone is told each patch's index in the trial (perceiver.LatentBackbone);
        False for windows cut from continuous recordings.
    unit_rank: None for free unit embeddings, r for low-rank ones (adapters.UnitIDAdapter).
    heads: which of "encoder", "behaviour", "contrastive", "forecast" are built and trained.
    weighting / loss_weights: how the heads' losses are combined (losses.MultiTaskLoss).
    """

    n_inputs: list[int]
    n_outputs: list[int] | None = None
    d_model: int = 32
    n_latents: int = 8
    patch_bins: int = 5
    n_heads: int = 2
    dropout: float = 0.1
    modalities: tuple[str, ...] = ("spikes",)
    use_perceiver: bool = True
    use_aggregator: bool = True
    positions: bool = True
    aggregator_layers: int = 0  # self-attention layers between units before pooling (0: pooling only; each costs N^2)
    heads: tuple[str, ...] = HEADS
    d_behaviour: int = 2
    d_embed: int = 16
    forecast_bins: int = 5
    weighting: str = "fixed"
    loss_weights: dict[str, float] = field(default_factory=dict)
    unit_rank: int | None = None

    def __post_init__(self):
        self.n_inputs = [int(n) for n in self.n_inputs]
        self.n_outputs = [int(n) for n in (self.n_outputs if self.n_outputs is not None else self.n_inputs)]
        self.modalities, self.heads = tuple(self.modalities), tuple(self.heads)
        if not self.n_inputs or len(self.n_outputs) != len(self.n_inputs):
            raise ValueError(f"n_inputs ({self.n_inputs}) and n_outputs ({self.n_outputs}) need one entry per session")
        if any(i < 1 or i > o for i, o in zip(self.n_inputs, self.n_outputs)):
            raise ValueError(f"every session needs 1 <= n_inputs <= n_outputs, got {self.n_inputs} / {self.n_outputs}")
        if not self.modalities or set(self.modalities) - set(MODALITIES):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        if self.patch_bins < 1 or self.forecast_bins < 1 or self.forecast_bins % self.patch_bins:
            raise ValueError(f"patch_bins ({self.patch_bins}) must be >= 1 and forecast_bins ({self.forecast_bins}) "
                             "a positive multiple of it (the forecast hides whole patches)")
        if not self.heads or set(self.heads) - set(HEADS):
            raise ValueError(f"heads must be a non-empty subset of {HEADS}, got {self.heads}")


@dataclass
class NeuroFMXOutput:
    """What one forward pass returns; a head that is not built gives None.

    log_rates (B, T, N_out); forecast (B, P, N_out, k): log-rates of the k bins after each patch;
    behaviour (B, T, d); embedding (B, P, E) unit length; population (B, P, D); latents (B, P, L, D);
    units (B, P, N_out, D). P = T / patch_bins.
    """

    latents: torch.Tensor
    units: torch.Tensor
    population: torch.Tensor
    log_rates: torch.Tensor | None = None
    forecast: torch.Tensor | None = None
    behaviour: torch.Tensor | None = None
    embedding: torch.Tensor | None = None


class NeuroFMX(nn.Module):
    """The composed model. ``backbone``: any module (B, T, D) -> (B, T, D) with D = config.d_model.

    Call: ``model(spikes=(B, T, N_in), calcium=(B, T, N_in), session=(B,), spike_present=(B,),
    calcium_present=(B,))``, any modality may be None -> :class:`NeuroFMXOutput`.
    """

    config_class = NeuroFMXConfig

    def __init__(self, config: NeuroFMXConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        d = config.d_model
        self.unit_adapters = nn.ModuleList(UnitIDAdapter(n, d, config.unit_rank) for n in config.n_outputs)
        self.stitcher = SessionStitcher(len(config.n_outputs), d)
        w = config.patch_bins
        tokenizers = {"spikes": lambda: SpikeTokenizer(d, w), "calcium": lambda: CalciumTokenizer(d, w)}
        self.tokenizers = nn.ModuleDict({m: tokenizers[m]() for m in config.modalities})
        self.encoder = PerceiverEncoder(d, config.n_latents, config.n_heads, config.dropout) \
            if config.use_perceiver else MeanPoolEncoder()
        self.latent_backbone = LatentBackbone(backbone, self.encoder.n_latents, d, config.positions)
        self.output_query = nn.Parameter(torch.randn(d) * 0.02)  # marks unit embeddings used as output queries
        self.decoder = PerceiverDecoder(d, config.n_heads, config.dropout)
        self.aggregator = PopulationAggregator(d, config.aggregator_layers, n_heads=config.n_heads,
                                               dropout=config.dropout) if config.use_aggregator else None
        builders = {"encoder": lambda: EncoderHead(d, w), "behaviour": lambda: BehaviourHead(d, config.d_behaviour, w),
                    "contrastive": lambda: ContrastiveHead(d, config.d_embed),
                    "forecast": lambda: ForecastHead(d, config.forecast_bins)}
        self.heads = nn.ModuleDict({name: builders[name]() for name in config.heads})
        self.task_loss = MultiTaskLoss(config.heads, config.weighting, config.loss_weights)

    @classmethod
    def from_config(cls, config: NeuroFMXConfig, backbone: nn.Module) -> "NeuroFMX":
        return cls(NeuroFMXConfig(**asdict(config)), backbone)

    @property
    def backbone(self) -> nn.Module:
        return self.latent_backbone.backbone

    # --- the parts of the forward pass ---------------------------------------------------------
    def unit_embeddings(self, session: torch.Tensor) -> torch.Tensor:
        """(B,) session ids -> (B, max N_out, D): each trial's units' embeddings (padding rows 0)."""
        width = max(self.config.n_outputs)
        tables = torch.stack([nn.functional.pad(adapter(), (0, 0, 0, width - adapter.n_units))
                              for adapter in self.unit_adapters])  # (S, max N_out, D)
        return tables[session]

    def unit_log_rate_bias(self, session: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, max N_out): each trial's units' baseline log-rates (padding 0)."""
        width = max(self.config.n_outputs)
        return torch.stack([nn.functional.pad(a.log_rate_bias, (0, width - a.n_units)) for a in self.unit_adapters])[session]

    def padding_mask(self, session: torch.Tensor, sizes: list[int], width: int) -> torch.Tensor:
        """(B, width) bool, True where unit n does not exist in the trial's session (n >= sizes[s])."""
        counts = torch.tensor(sizes, device=session.device)[session]
        return torch.arange(width, device=session.device)[None, :] >= counts[:, None]

    def _inputs(self, values: dict, present: dict, session: torch.Tensor):
        """Checked inputs -> tokens (B, P, M*N, D) of every given modality and their padding (B, M*N)."""
        reference = next(iter(values.values()))
        n_trials, n_bins, width = reference.shape
        if width > max(self.config.n_inputs):
            raise ValueError(f"inputs have {width} units but the widest session has {max(self.config.n_inputs)} "
                             "input units")
        embeddings = self.unit_embeddings(session)[:, :width]
        padding = self.padding_mask(session, self.config.n_inputs, width)
        tokens, masks = [], []
        for name, x in values.items():
            if x.shape != reference.shape:
                raise ValueError(f"{name} is {tuple(x.shape)} but the other modality is {tuple(reference.shape)}; "
                                 "paired modalities must cover the same trials, bins and units")
            tokens.append(self.tokenizers[name](x, embeddings))
            absent = ~present[name].to(device=x.device, dtype=torch.bool) if present[name] is not None \
                else torch.zeros(n_trials, dtype=torch.bool, device=x.device)
            masks.append(padding | absent[:, None])
        tokens, mask = torch.cat(tokens, dim=2), torch.cat(masks, dim=1)
        if mask.device.type != "meta" and bool(mask.all(dim=1).any()):  # attention over nothing is NaN
            raise ValueError("some trials have no input at all (every modality marked absent); give each trial "
                             "at least one modality")
        return self.stitcher(tokens, session), mask

    def forward(self, spikes: torch.Tensor | None = None, session: torch.Tensor | None = None,
                calcium: torch.Tensor | None = None, spike_present: torch.Tensor | None = None,
                calcium_present: torch.Tensor | None = None) -> NeuroFMXOutput:
        values = {name: x for name, x in (("spikes", spikes), ("calcium", calcium)) if x is not None}
        if not values:
            raise ValueError("NeuroFMX needs spikes and/or calcium, shaped (trials, time bins, units); got neither")
        for name, x in values.items():
            if name not in self.tokenizers:
                raise ValueError(f"this model has no {name} tokenizer (config.modalities={self.config.modalities}); "
                                 f"build it with modalities including {name!r}")
            if x.dim() != 3:
                raise ValueError(f"{name} must be (trials, time bins, units), got shape {tuple(x.shape)}")
        reference = next(iter(values.values()))
        if session is None:
            if len(self.unit_adapters) > 1:
                raise ValueError(f"this model has {len(self.unit_adapters)} sessions: pass session (trials,) ids")
            session = torch.zeros(reference.shape[0], dtype=torch.long, device=reference.device)
        if session.shape != reference.shape[:1]:
            raise ValueError(f"session must be (trials,) = ({reference.shape[0]},), got {tuple(session.shape)}")
        tokens, mask = self._inputs(values, {"spikes": spike_present, "calcium": calcium_present}, session)

        latents = self.latent_backbone(self.encoder(tokens, mask))  # (B, P, L, D)
        embeddings = self.unit_embeddings(session)  # (B, N_out, D)
        units = self.decoder(embeddings + self.output_query, latents)  # (B, P, N_out, D)
        out_padding = self.padding_mask(session, self.config.n_outputs, units.shape[2])
        population = latents.mean(2)  # (B, P, D): the latents' summary ...
        if self.aggregator is not None:  # ... plus what a permutation-invariant read of the units adds
            population = population + self.aggregator(units, out_padding)
        heads, bias = self.heads, self.unit_log_rate_bias(session)  # bias: (B, N_out)
        return NeuroFMXOutput(
            latents=latents, units=units, population=population,
            log_rates=heads["encoder"](units, embeddings) + bias[:, None] if "encoder" in heads else None,
            forecast=heads["forecast"](units, embeddings) + bias[:, None, :, None] if "forecast" in heads else None,
            behaviour=heads["behaviour"](population) if "behaviour" in heads else None,
            embedding=heads["contrastive"](population) if "contrastive" in heads else None,
        )
