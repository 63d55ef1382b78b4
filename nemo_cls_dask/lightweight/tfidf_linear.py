"""A TF-IDF vector and a linear model as one torch module over term ids (the ``tfidf-linear`` layout).

``TfidfLinear(input_ids, attention_mask)`` takes the ids of
:class:`~nemo_cls_dask.lightweight.tfidf_terms.TermTokenizer` (padding ``0``, text start
``1``, term ``j`` as ``j + 2``) and computes what ``TfidfVectorizer.transform`` followed by
the linear model's ``decision_function`` computes, without a dense ``(rows, vocabulary)``
matrix: the distinct (row, term) pairs are counted with ``torch.unique``, weighted
(``binary``, ``sublinear_tf``: ``1 + log(count)``, times ``idf``), normalised per row
(``l2``, ``l1`` or none), and multiplied by the coefficients of those terms only.

The outputs are what the operator's problem type expects (its activation is applied by
the operator):

* ``link="identity"``: the decision values. Softmax of them is a multinomial logistic
  regression's ``predict_proba``; sigmoid of each is a one-vs-rest multi-label model's; for
  regression they are the predictions.
* ``link="ovr_normalized"``: ``log(sigmoid(decision))``, whose softmax is
  ``sigmoid(d_k) / sum_j sigmoid(d_j)``: the ``predict_proba`` of one-vs-rest single-label
  models (``SGDClassifier(loss="log_loss")`` with more than two classes,
  ``LogisticRegression`` with ``liblinear``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from .tfidf_terms import FIRST_TERM_ID

LINKS = ("identity", "ovr_normalized")
NORMS = (None, "l1", "l2")


class TfidfLinear(nn.Module):
    """TF-IDF weighting and a linear model over term ids; see the module docstring."""

    def __init__(self, num_features: int, num_outputs: int, *, sublinear_tf: bool = False, norm: str | None = "l2",
                 use_idf: bool = True, binary: bool = False, link: str = "identity") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}.")
        self.num_features = int(num_features)
        self.sublinear_tf, self.norm, self.use_idf, self.binary, self.link = sublinear_tf, norm, use_idf, binary, link
        self.coef = nn.Parameter(torch.zeros(num_outputs, num_features), requires_grad=False)
        self.intercept = nn.Parameter(torch.zeros(num_outputs), requires_grad=False)
        if use_idf:
            self.idf = nn.Parameter(torch.ones(num_features), requires_grad=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        rows_n = input_ids.shape[0]
        terms = input_ids.long() - FIRST_TERM_ID
        is_term = terms >= 0
        if attention_mask is not None:
            is_term &= attention_mask.bool()
        rows = torch.arange(rows_n, device=input_ids.device).unsqueeze(1).expand_as(terms)[is_term]
        pairs, counts = torch.unique(rows * self.num_features + terms[is_term], return_counts=True)
        row, term = pairs // self.num_features, pairs % self.num_features
        dtype = self.coef.dtype
        values = torch.ones_like(counts, dtype=dtype) if self.binary else counts.to(dtype)
        if self.sublinear_tf:
            values = torch.log(values) + 1.0
        if self.use_idf:
            values = values * self.idf[term]
        if self.norm is not None:
            per_row = values.abs() if self.norm == "l1" else values * values
            total = torch.zeros(rows_n, dtype=dtype, device=values.device).index_add_(0, row, per_row)
            total = total if self.norm == "l1" else total.sqrt()
            values = values / total[row]
        decision = self.intercept.expand(rows_n, -1).clone()
        decision.index_add_(0, row, values.unsqueeze(1) * self.coef[:, term].T)
        if self.link == "ovr_normalized":
            return nn.functional.logsigmoid(decision)
        return decision

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as saved under ``"tfidf_linear"`` in ``config.json``."""
        return {"num_features": self.num_features, "num_outputs": int(self.coef.shape[0]), "sublinear_tf": self.sublinear_tf,
                "norm": self.norm, "use_idf": self.use_idf, "binary": self.binary, "link": self.link}

    @classmethod
    def from_config(cls, config: Any, source: str = "config.json", max_features: int | None = None) -> TfidfLinear:
        """Build from saved settings, checking each (a bad or huge value is a :class:`ModelLoadError`)."""
        if not isinstance(config, dict):
            raise ModelLoadError(f"{source}: 'tfidf_linear' must be a JSON object with the module settings.")
        expected = {"num_features", "num_outputs", "sublinear_tf", "norm", "use_idf", "binary", "link"}
        if set(config) != expected:
            raise ModelLoadError(f"{source}: 'tfidf_linear' must have exactly the keys {sorted(expected)}, got {sorted(config)}.")
        for key in ("num_features", "num_outputs"):
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelLoadError(f"{source}: tfidf_linear.{key} must be a positive integer, got {value!r}.")
        if max_features is not None and config["num_features"] > max_features:
            raise ModelLoadError(f"{source}: tfidf_linear.num_features {config['num_features']} is over the limit of "
                                 f"{max_features} terms this loader accepts.")
        for key in ("sublinear_tf", "use_idf", "binary"):
            if not isinstance(config[key], bool):
                raise ModelLoadError(f"{source}: tfidf_linear.{key} must be true or false, got {config[key]!r}.")
        if config["norm"] not in NORMS or config["link"] not in LINKS:
            raise ModelLoadError(f"{source}: tfidf_linear.norm must be one of {NORMS} and link one of {LINKS}; "
                                 f"got {config['norm']!r}, {config['link']!r}.")
        settings = dict(config)
        return cls(settings.pop("num_features"), settings.pop("num_outputs"), **settings)
