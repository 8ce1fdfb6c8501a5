"""Class activation maps on any traced model, at a node fxmaps chooses or the user names.

Builds on :mod:`fxmaps.extract` (the spatial view of tokens and grids) and
:mod:`fxmaps.graph` (layouts, shapes, the main path); :mod:`fxmaps.render` draws
the results (``plot_cam``).
"""

from fxmaps.cam.layer import default_layer
from fxmaps.cam.methods import METHODS
from fxmaps.cam.result import CamResult
from fxmaps.cam.run import cam

__all__ = ["METHODS", "CamResult", "cam", "default_layer"]
