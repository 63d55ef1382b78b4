"""Old name of :mod:`nemo_cls_dask.lightweight`, kept so that existing imports still work."""

from ..lightweight import *  # noqa: F401,F403
from ..lightweight import __all__  # noqa: F401
