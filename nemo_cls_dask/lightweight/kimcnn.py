"""KimCNN (Kim 2014, "Convolutional Neural Networks for Sentence Classification") as a module.

Embedding (characters or words) -> parallel ``Conv1d`` with kernel sizes 3/4/5 and
``num_filters`` filters each -> ReLU -> max over time -> dropout -> linear head. The
module takes ``(input_ids, attention_mask)`` and returns raw outputs ``(rows, outputs)``,
the contract of the package's inference engine, so a KimCNN checkpoint runs through
:class:`~nemo_cls_dask.DistributedDataClassifier` like a transformer.

Padding never changes a row's output. Padded positions are zero vectors (the mask
multiplies the embeddings), each row is also zero-padded by ``k - 1`` on both sides
(a "wide" convolution), and the max runs only over windows that hold at least one real
token. So a row alone and the same row in a longer batch, padded on either side, see the
same windows; and rows shorter than the largest kernel (down to one token) still have
windows. Kim's original narrow convolution would drop such rows' short n-grams.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelLoadError
from .vocab import PAD_ID, UNK_ID

DEFAULT_KERNEL_SIZES = (3, 4, 5)


class KimCNN(nn.Module):
    """Convolutions over token embeddings with masked max-over-time pooling.

    Parameters
    ----------
    vocab_size
        Number of token ids (id 0 is padding and has a zero embedding).
    num_outputs
        Width of the linear head (classes, labels or regression targets).
    embedding_dim, num_filters, kernel_sizes, dropout
        Embedding width; filters per kernel size; the n-gram widths; dropout on the pooled
        features (only in training mode).
    """

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        *,
        embedding_dim: int = 64,
        num_filters: int = 100,
        kernel_sizes: Sequence[int] = DEFAULT_KERNEL_SIZES,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        with torch.no_grad():  # the unknown token starts neutral (a zero vector); it learns only
            self.embedding.weight[UNK_ID].zero_()  # if the training text holds tokens left out of the vocabulary
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, num_filters, k) for k in self.kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_filters * len(self.kernel_sizes), num_outputs)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features ``(rows, num_filters * len(kernel_sizes))`` before dropout and head.

        Each convolution runs as one matrix product (bias fused) over the unfolded windows;
        the ``Conv1d`` modules hold the weights. On CPU this is faster than ``Conv1d`` with
        these few channels, and gives the same numbers up to rounding.
        """
        mask = (input_ids != PAD_ID) if attention_mask is None else attention_mask.bool()
        x = self.embedding(input_ids) * mask.unsqueeze(-1).to(self.embedding.weight.dtype)  # (rows, width, dim)
        widest = max(self.kernel_sizes)
        x = F.pad(x, (0, 0, widest - 1, widest - 1))  # zero vectors on both sides: "wide" convolution
        real = F.pad(mask.to(torch.float32), (widest - 1, widest - 1))
        rows, width = input_ids.shape
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            span = slice(widest - k, widest + width + k - 2)  # width + 2(k - 1) positions
            windows = x[:, span].unfold(1, k, 1)  # (rows, width + k - 1, dim, k)
            positions = windows.shape[1]
            weight = conv.weight.reshape(conv.out_channels, -1)  # (filters, dim * k), the same order
            h = torch.addmm(conv.bias, windows.reshape(rows * positions, -1), weight.t())
            # A window counts if it covers at least one real token. The others lie wholly in
            # padding (their value is the bias): set them 1e4 down, touching only those rows.
            # max then ReLU equals ReLU then max; a row with no tokens at all gets 0.
            outside = (real[:, span].unfold(1, k, 1).amax(dim=-1) == 0).reshape(-1).nonzero().squeeze(1)
            if outside.numel():
                h = h.index_fill(0, outside, -1e4)
            pooled.append(F.relu(h.view(rows, positions, -1).amax(dim=1)))
        return torch.cat(pooled, dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.dropout(self.features(input_ids, attention_mask)))

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as saved under ``"kimcnn"`` in ``config.json``."""
        return {
            "vocab_size": self.embedding.num_embeddings,
            "num_outputs": self.fc.out_features,
            "embedding_dim": self.embedding.embedding_dim,
            "num_filters": self.convs[0].out_channels,
            "kernel_sizes": list(self.kernel_sizes),
            "dropout": float(self.dropout.p),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "config.json") -> KimCNN:
        """Build an untrained module from :meth:`config`'s dict; clear errors for bad values."""
        try:
            sizes = [int(k) for k in config["kernel_sizes"]]
            numbers = {name: int(config[name]) for name in ("vocab_size", "num_outputs", "embedding_dim", "num_filters")}
            dropout = float(config.get("dropout", 0.0))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelLoadError(
                f"{source}: the 'kimcnn' settings need vocab_size, num_outputs, embedding_dim, num_filters and "
                f"kernel_sizes ({type(error).__name__}: {error})."
            ) from None
        if not sizes or min(sizes) < 1 or min(numbers.values()) < 1 or not 0 <= dropout < 1:
            raise ModelLoadError(f"{source}: invalid 'kimcnn' settings {config!r}.")
        return cls(
            numbers["vocab_size"],
            numbers["num_outputs"],
            embedding_dim=numbers["embedding_dim"],
            num_filters=numbers["num_filters"],
            kernel_sizes=sizes,
            dropout=dropout,
        )
