"""Light text classifiers: KimCNN over a fitted character/word vocabulary, and scikit-learn adapters.

Both train in memory with ``fit``/``predict``/``predict_proba``/``evaluate`` and apply to
dask DataFrames: a saved :class:`KimCNNClassifier` checkpoint loads in
:class:`~nemo_cls_dask.DistributedDataClassifier` (and the CLI) like a transformer, and
:meth:`SklearnTextClassifier.as_operator` gives an operator with the same output columns.
"""

from .kimcnn_estimator import KimCNNClassifier
from .kimcnn import KimCNN
from .sklearn_adapter import SklearnOperator, SklearnTextClassifier
from .vocab import VOCAB_FILE, TextVocab
from . import tfidf_checkpoint  # noqa: F401,E402  (registers the "tfidf-linear" checkpoint layout)

__all__ = ["KimCNN", "KimCNNClassifier", "SklearnOperator", "SklearnTextClassifier", "TextVocab", "VOCAB_FILE"]
