"""``python -m nemo_cls_dask`` is the same as the ``nemo-cls-dask`` command."""

from .cli import main

raise SystemExit(main())
