"""``python -m nemo_cls_dask.cli`` is the same as ``nemo-cls-dask``."""

from . import main

raise SystemExit(main())
