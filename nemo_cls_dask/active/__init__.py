"""Active learning over large frames: query the most informative rows, label, refit.

* :func:`query` returns the ``n`` most informative rows of a dask DataFrame (least
  confidence, entropy, breaking ties, seeded random, k-means or coreset on embeddings),
  scoring partitions on the workers and bringing only the answer to the client.
* :class:`ActiveLearner` runs the loop (initialize, query, update with labels, refit) on a
  pool held as a dask DataFrame.
"""

from .learner import ActiveLearner, fresh_copy
from .query import query
from .scoring import DIVERSITY_STRATEGIES, STRATEGIES

__all__ = ["ActiveLearner", "DIVERSITY_STRATEGIES", "STRATEGIES", "fresh_copy", "query"]
