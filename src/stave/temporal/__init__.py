"""The stacked-temporal-attention mechanism, independent of any model family."""

from .attention import TemporalAttention
from .block import TemporalBlockMixin
from .layout import TemporalGroup, TemporalLayout

__all__ = ["TemporalAttention", "TemporalBlockMixin", "TemporalGroup", "TemporalLayout"]
