"""Dataset-scale statistics: per-channel moments and top samples, one streaming pass."""

from fxmaps.stats.channels import ChannelStats, LayerStats, channel_stats, share_weights

__all__ = ["ChannelStats", "LayerStats", "channel_stats", "share_weights"]
