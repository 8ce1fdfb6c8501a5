"""Dataset-scale statistics: per-channel moments and top samples, one streaming pass."""

from fxmaps.stats.channels import ChannelStats, LayerStats, channel_stats
from fxmaps.stats.top import TopSamples, top_samples
from fxmaps.stats.world import share_weights

__all__ = [
    "ChannelStats",
    "LayerStats",
    "TopSamples",
    "channel_stats",
    "share_weights",
    "top_samples",
]
