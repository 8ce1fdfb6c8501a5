"""Class activation maps on any model (traced, or captured where torch.fx stops), at a node
fxmaps chooses or the user names.

Builds on :mod:`fxmaps.extract` (the spatial view of tokens and grids) and
:mod:`fxmaps.graph` (layouts, shapes, the main path); :mod:`fxmaps.render` draws
the results (``plot_cam``).
"""

from fxmaps.attribute.layer import default_layer
from fxmaps.attribute.methods import METHODS
from fxmaps.attribute.result import CamResult
from fxmaps.attribute.run import cam

__all__ = ["METHODS", "CamResult", "cam", "default_layer"]
