"""Writers of tiny checkpoints in the exact on-disk layouts of real hub repos, and sample texts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .vocab import _BACKBONE_STD, _EMBEDDING_STD, _HEAD_STD, _check_arch, make_tokenizer, tiny_backbone_config

def _is_head(name: str) -> bool:
    # Classification heads of *ForSequenceClassification models, and the
    # NVIDIA ``fc``.  (``pooler``/``ContextPooler`` counts as backbone.)
    return name in ("classifier", "fc") or name.startswith(("classifier.", "fc."))


def _randomize(model, seed: int) -> None:
    """Overwrite every parameter from a private generator seeded with ``seed``.

    Does not depend on how a transformers version happens to initialise
    weights, and leaves the global torch RNG alone.  LayerNorms are reset to
    identity, embedding padding rows to zero (as real checkpoints have them).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    done: set[int] = set()
    with torch.no_grad():
        for name, module in model.named_modules():
            own = list(module.named_parameters(recurse=False))
            if not own:
                continue
            cls_name = type(module).__name__
            if isinstance(module, torch.nn.LayerNorm) or "LayerNorm" in cls_name:
                for pname, p in own:
                    p.fill_(1.0 if pname == "weight" else 0.0)
                    done.add(id(p))
                continue
            head = _is_head(name)
            for pname, p in own:
                if id(p) in done:  # tied weights
                    continue
                if pname == "bias":
                    std = 0.1 * (_HEAD_STD if head else _BACKBONE_STD)
                elif head:
                    std = _HEAD_STD
                elif isinstance(module, torch.nn.Embedding):
                    std = _EMBEDDING_STD
                else:
                    std = _BACKBONE_STD
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype) * std)
                done.add(id(p))
            if isinstance(module, torch.nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()


def _labels_maps(labels: list[str]) -> tuple[dict[int, str], dict[str, int]]:
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels!r}")
    return {i: lab for i, lab in enumerate(labels)}, {lab: i for i, lab in enumerate(labels)}


@contextlib.contextmanager
def _private_rng() -> Iterator[None]:
    """Restore the global torch CPU RNG afterwards (module construction draws from it)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        yield


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Silence transformers' "Writing model shards" bar, restoring the previous setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _prepare_dir(path: str | Path) -> Path:
    out = Path(path).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------------------
# Public fabricators
# ---------------------------------------------------------------------------


def make_deberta_head_checkpoint(
    path: str | Path,
    labels: list[str],
    *,
    max_len: int = 512,
    fc_dropout: float = 0.2,
    seed: int = 0,
    base_model: str | None = None,
    extra_config: dict | None = None,
) -> Path:
    """Write a tiny NVIDIA NeMo Curator "Deberta"-head checkpoint into ``path``.

    Layout (as in nvidia/quality-classifier-deberta, nvidia/domain-classifier,
    ...): ``config.json`` is a plain dict with ``base_model``, ``fc_dropout``,
    ``max_len``, ``id2label`` (string keys ``"0"..``) and ``label2id``;
    ``model.safetensors`` holds the DeBERTa-v2 backbone under ``model.`` and the
    head ``fc.weight`` ``[len(labels), 32]`` / ``fc.bias``; the DeBERTa-v3 style
    tokenizer files sit next to them (``AutoTokenizer.from_pretrained(path)``).

    The real ``base_model`` ("microsoft/deberta-v3-base") cannot be fetched
    offline, so by default the tiny backbone's ``config.json`` is written to
    the sibling folder ``<path.parent>/<path.name>-backbone`` and its absolute
    path is recorded as ``base_model``; ``AutoModel.from_config(
    AutoConfig.from_pretrained(base_model))`` then builds a backbone whose
    ``state_dict`` matches the ``model.``-stripped weights exactly.  The
    checkpoint folder itself holds only the hub files.

    If ``base_model`` is given it is recorded verbatim and no sibling is
    written.  When it is a local directory with a ``config.json`` the backbone
    is built from that config (so it must be a DeBERTa-v2 config whose
    ``vocab_size`` covers the tiny tokenizer); otherwise (e.g. a hub id, to test
    id mapping or failure paths) the weights still come from the tiny config.

    ``extra_config`` is merged last into ``config.json`` (e.g. ``pooling`` or
    ``problem_type`` keys that later code may read).  Weights are drawn from a
    generator seeded with ``seed``; the head has std 1.0 so different texts get
    clearly different argmax labels.  Returns the checkpoint folder.
    """
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModel

    if not labels:
        raise ValueError("labels must be a non-empty list")
    id2label, label2id = _labels_maps(list(labels))
    out = _prepare_dir(path)

    tokenizer = make_tokenizer("deberta", max_len=max_len)
    if base_model is None:
        backbone_config = tiny_backbone_config("deberta", vocab_size=len(tokenizer))
        backbone_dir = out.parent / f"{out.name}-backbone"
        backbone_dir.mkdir(parents=True, exist_ok=True)
        backbone_config.save_pretrained(backbone_dir)
        recorded_base = str(backbone_dir)
    else:
        recorded_base = base_model
        if (Path(base_model) / "config.json").is_file():
            backbone_config = AutoConfig.from_pretrained(base_model)
            if backbone_config.vocab_size < len(tokenizer):
                raise ValueError(
                    f"{base_model}: vocab_size {backbone_config.vocab_size} < tokenizer size {len(tokenizer)}"
                )
        else:
            backbone_config = tiny_backbone_config("deberta", vocab_size=len(tokenizer))

    import torch

    with _private_rng():
        backbone = AutoModel.from_config(backbone_config)
        fc = torch.nn.Linear(backbone_config.hidden_size, len(labels))
    holder = torch.nn.Module()
    holder.model = backbone
    holder.fc = fc
    _randomize(holder, seed)

    state = {k: v.detach().contiguous().clone() for k, v in holder.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})

    config: dict[str, Any] = {
        "base_model": recorded_base,
        "fc_dropout": fc_dropout,
        "id2label": {str(i): lab for i, lab in id2label.items()},
        "label2id": label2id,
        "max_len": max_len,
    }
    if extra_config:
        config.update(extra_config)
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    tokenizer.save_pretrained(out)
    return out


def make_hf_sequence_checkpoint(
    path: str | Path,
    labels: list[str] | None,
    *,
    num_labels: int | None = None,
    problem_type: str = "single_label_classification",
    arch: str = "bert",
    max_len: int = 512,
    seed: int = 0,
) -> Path:
    """Write a tiny ``save_pretrained`` sequence-classification checkpoint into ``path``.

    ``arch="bert"`` saves a ``BertForSequenceClassification`` (the shape of
    HuggingFaceFW/fineweb-edu-classifier), ``arch="deberta"`` a
    ``DebertaV2ForSequenceClassification``; the matching tokenizer is saved
    alongside, so ``AutoModelForSequenceClassification.from_pretrained(path)``
    and ``AutoTokenizer.from_pretrained(path)`` both work offline.

    ``labels`` fills ``id2label``/``label2id``.  For a regression head pass
    ``labels=None, num_labels=1, problem_type="regression"`` (the config then
    carries transformers' default ``LABEL_0``).  ``problem_type`` is written to
    the config as given ("single_label_classification",
    "multi_label_classification" or "regression").  Returns the folder.
    """
    from transformers import AutoModelForSequenceClassification

    _check_arch(arch)
    if labels is not None:
        labels = list(labels)
        if num_labels is not None and num_labels != len(labels):
            raise ValueError(f"num_labels={num_labels} does not match {len(labels)} labels")
        num_labels = len(labels)
    if not num_labels or num_labels < 1:
        raise ValueError("give labels or a positive num_labels")

    out = _prepare_dir(path)
    tokenizer = make_tokenizer(arch, max_len=max_len)
    overrides: dict[str, Any] = {"num_labels": num_labels, "problem_type": problem_type}
    if labels is not None:
        id2label, label2id = _labels_maps(labels)
        overrides.update(id2label=id2label, label2id=label2id)
    config = tiny_backbone_config(arch, vocab_size=len(tokenizer), **overrides)

    with _private_rng():
        model = AutoModelForSequenceClassification.from_config(config)
    _randomize(model, seed)
    model.eval()
    with _quiet_progress():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_backbone_checkpoint(
    path: str | Path,
    *,
    arch: str = "bert",
    seed: int = 0,
    max_len: int = 512,
) -> Path:
    """Write a tiny bare backbone (``AutoModel``: BertModel / DebertaV2Model) plus tokenizer.

    Standard ``save_pretrained`` output, loadable with
    ``AutoModel.from_pretrained(path)`` / ``AutoTokenizer.from_pretrained(path)``
    -- the starting point for fine-tuning tests that attach a fresh head.
    Returns the folder.
    """
    from transformers import AutoModel

    _check_arch(arch)
    out = _prepare_dir(path)
    tokenizer = make_tokenizer(arch, max_len=max_len)
    with _private_rng():
        model = AutoModel.from_config(tiny_backbone_config(arch, vocab_size=len(tokenizer)))
    _randomize(model, seed)
    model.eval()
    with _quiet_progress():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------
# NVIDIA NeMo Curator classifiers
# ---------------------------------------------------------------------------

#: The maps of nvidia/prompt-task-and-complexity-classifier's ``config.json``
#: (public facts of that repo; ``base_model`` is replaced by the tiny backbone).
PROMPT_COMPLEXITY_CONFIG: dict[str, Any] = {
    "base_model": "microsoft/DeBERTa-v3-base",
    "config_path": None,
    "fc_dropout": 0.2,
    "targets": [
        "task_type_1",
        "task_type_2",
        "task_type_prob",
        "creativity_scope",
        "reasoning",
        "contextual_knowledge",
        "number_of_few_shots",
        "domain_knowledge",
        "no_label_reason",
        "constraint_ct",
        "prompt_complexity_score",
    ],
    "target_sizes": {
        "task_type": 12,
        "creativity_scope": 3,
        "reasoning": 2,
        "contextual_knowledge": 2,
        "number_of_few_shots": 6,
        "domain_knowledge": 4,
        "no_label_reason": 1,
        "constraint_ct": 2,
    },
    "task_type_map": {
        str(i): name
        for i, name in enumerate(
            [
                "Brainstorming",
                "Chatbot",
                "Classification",
                "Closed QA",
                "Code Generation",
                "Extraction",
                "Open QA",
                "Other",
                "Rewrite",
                "Summarization",
                "Text Generation",
                "Unknown",
            ]
        )
    },
    "weights_map": {
        "creativity_scope": [2, 1, 0],
        "reasoning": [0, 1],
        "contextual_knowledge": [0, 1],
        "number_of_few_shots": [0, 1, 2, 3, 4, 5],
        "domain_knowledge": [3, 1, 2, 0],
        "no_label_reason": [0],
        "constraint_ct": [1, 0],
    },
    "divisor_map": {
        "creativity_scope": 2,
        "reasoning": 1,
        "contextual_knowledge": 1,
        "number_of_few_shots": 1,
        "domain_knowledge": 3,
        "no_label_reason": 1,
        "constraint_ct": 1,
    },
}


def make_prompt_complexity_checkpoint(
    path: str | Path,
    *,
    seed: int = 0,
    base_model: str | None = None,
    config_overrides: dict | None = None,
    drop_config_keys: Iterable[str] = (),
) -> Path:
    """Write a tiny stand-in of nvidia/prompt-task-and-complexity-classifier into ``path``.

    ``config.json`` holds the real repo's keys and maps (:data:`PROMPT_COMPLEXITY_CONFIG`:
    ``targets``, ``target_sizes``, ``task_type_map``, ``weights_map``, ``divisor_map``, no
    ``model_type``); ``model.safetensors`` the DeBERTa-v2 backbone under ``backbone.`` and
    one ``head_<i>.fc.weight`` / ``head_<i>.fc.bias`` per target, in ``target_sizes``
    order; DeBERTa-v3 style tokenizer files sit beside them. As in
    :func:`make_deberta_head_checkpoint`, ``base_model`` is the absolute path of a sibling
    folder with the tiny backbone's config unless given. ``config_overrides`` are merged
    into the config and ``drop_config_keys`` removed (to fabricate broken checkpoints).
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel

    out = _prepare_dir(path)
    tokenizer = make_tokenizer("deberta", max_len=512)
    backbone_config = tiny_backbone_config("deberta", vocab_size=len(tokenizer))
    if base_model is None:
        backbone_dir = out.parent / f"{out.name}-backbone"
        backbone_dir.mkdir(parents=True, exist_ok=True)
        backbone_config.save_pretrained(backbone_dir)
        base_model = str(backbone_dir)

    config = json.loads(json.dumps(PROMPT_COMPLEXITY_CONFIG))
    config["base_model"] = base_model
    config.update(config_overrides or {})
    for key in drop_config_keys:
        config.pop(key, None)

    sizes = list(PROMPT_COMPLEXITY_CONFIG["target_sizes"].values())
    with _private_rng():
        holder = torch.nn.Module()
        holder.backbone = AutoModel.from_config(backbone_config)
        for index, size in enumerate(sizes):
            head = torch.nn.Module()
            head.fc = torch.nn.Linear(backbone_config.hidden_size, size)
            holder.add_module(f"head_{index}", head)
    _randomize_multihead(holder, seed)
    state = {k: v.detach().contiguous().clone() for k, v in holder.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(out)
    return out


def _randomize_multihead(holder, seed: int) -> None:
    """:func:`_randomize`, with the ``head_<i>.fc`` layers drawn as heads (std 1.0)."""
    import torch

    _randomize(holder, seed)
    gen = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for name, module in holder.named_modules():
            if name.startswith("head_") and isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * _HEAD_STD)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1 * _HEAD_STD)


#: Short name -> (layout, labels, max_len) of the NVIDIA checkpoints the fabricator knows
#: (filled on first use: the labels live in nemo_cls_dask.classifiers, imported lazily).
_NVIDIA_KINDS: dict[str, tuple[str, tuple[str, ...] | None, int]] = {}


def _nvidia_kinds() -> dict[str, tuple[str, tuple[str, ...] | None, int]]:
    if not _NVIDIA_KINDS:
        from ..classifiers.nvidia import CONTENT_TYPE_LABELS, DOMAIN_LABELS

        _NVIDIA_KINDS.update(
            {
                "quality": ("head", ("High", "Medium", "Low"), 1024),
                "domain": ("head", DOMAIN_LABELS, 512),
                "multilingual-domain": ("head", DOMAIN_LABELS, 512),
                "content-type": ("head", CONTENT_TYPE_LABELS, 1024),
                "fineweb-edu": ("regression", None, 512),
                "fineweb-mixtral-edu": ("regression", None, 512),
                "fineweb-nemotron-edu": ("regression", None, 512),
                "prompt-task-complexity": ("multihead", None, 512),
            }
        )
    return _NVIDIA_KINDS


def make_nvidia_checkpoint(kind: str, path: str | Path, *, seed: int = 0, **options: Any) -> Path:
    """Write a tiny stand-in for the hub repo of the ready-made classifier ``kind``.

    ``kind`` is a short name of :data:`nemo_cls_dask.classifiers.CLASSIFIERS`:

    * ``quality``, ``domain``, ``multilingual-domain``, ``content-type``: the NVIDIA
      "Deberta" head layout (:func:`make_deberta_head_checkpoint`) with the real repo's
      labels in id order and its ``max_len``;
    * ``fineweb-edu``, ``fineweb-mixtral-edu``, ``fineweb-nemotron-edu``: a
      ``BertForSequenceClassification`` with one regression output
      (:func:`make_hf_sequence_checkpoint`);
    * ``prompt-task-complexity``: :func:`make_prompt_complexity_checkpoint`.

    ``options`` go to the underlying fabricator. Returns the folder, which the class loads
    with ``model_identifier=<folder>`` exactly as it loads the hub repo.
    """
    kinds = _nvidia_kinds()
    if kind not in kinds:
        raise ValueError(f"Unknown NVIDIA classifier kind {kind!r}; choose from {sorted(kinds)}.")
    layout, labels, max_len = kinds[kind]
    if layout == "head":
        return make_deberta_head_checkpoint(path, list(labels), max_len=max_len, seed=seed, **options)
    if layout == "regression":
        return make_hf_sequence_checkpoint(
            path, None, num_labels=1, problem_type="regression", arch="bert", max_len=max_len, seed=seed, **options
        )
    return make_prompt_complexity_checkpoint(path, seed=seed, **options)


def make_fake_hf_cache(cache_dir: str | Path, repos: dict[str, str | Path], *, revision: str = "0" * 40) -> Path:
    """Lay checkpoint folders out as a Hugging Face hub cache, so hub ids resolve offline.

    For each ``repo_id -> folder`` the files are copied to
    ``<cache_dir>/models--<org>--<name>/snapshots/<revision>/`` and ``refs/main`` names
    that revision: ``snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True)``
    (and so ``QualityClassifier(cache_dir=cache_dir)``) then finds them. Returns ``cache_dir``.
    """
    import shutil

    root = Path(cache_dir).expanduser().resolve()
    for repo_id, folder in repos.items():
        repo = root / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / revision
        if snapshot.exists():
            shutil.rmtree(snapshot)
        shutil.copytree(Path(folder), snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    return root


# ---------------------------------------------------------------------------
# Sample texts
# ---------------------------------------------------------------------------

_LONG_1 = (
    "The city council met on Tuesday night to debate the new transit plan, which would add "
    "three bus lines, extend the light rail to the airport and close two downtown streets to "
    "cars on weekends. Supporters said the plan would cut traffic, lower emissions and help "
    "workers who cannot afford to drive, while several shop owners warned that fewer parking "
    "spaces could hurt small businesses that already struggle with high rents. After nearly "
    "four hours of public comment, the council voted six to three to approve a pilot program "
    "for one year. The mayor promised to publish monthly ridership numbers and to revisit the "
    "street closures in the spring if sales in the area fall. Officials expect the first new "
    "buses to run in early March, and the rail extension, which still needs state funding, "
    "could open as soon as the end of next year if the budget passes without major changes "
    "to the transportation section."
)

_LONG_2 = (
    "Bread is one of the oldest prepared foods, and making it at home is simpler than many "
    "people think. Mix five hundred grams of flour with ten grams of salt, seven grams of "
    "yeast and about three hundred and fifty grams of warm water until no dry flour remains. "
    "Cover the bowl and let the dough rest for thirty minutes, then fold it over itself a few "
    "times to build strength. Repeat the folding twice more over the next hour. When the "
    "dough has doubled in size, shape it into a tight ball, place it seam side up in a floured "
    "basket and let it rise again for about forty five minutes. Meanwhile heat the oven with a "
    "heavy pot inside to two hundred and forty degrees. Turn the loaf into the hot pot, cut a "
    "shallow line across the top, cover it and bake for twenty minutes, then remove the lid "
    "and bake until the crust is deep brown. Let it cool completely before slicing."
)

_LONG_3 = (
    "In the study, researchers followed more than two thousand students across forty schools "
    "for three years to measure how the time spent reading for pleasure relates to later "
    "performance in science and mathematics. Students who reported reading at least twenty "
    "minutes a day scored higher on average, even after the team accounted for family income, "
    "prior grades and the number of books at home. The authors caution that the data are "
    "observational, so they cannot prove that reading causes the improvement, and they note "
    "that the effect was smaller in schools with strong tutoring programs. Still, they argue "
    "that libraries and quiet reading periods are cheap to provide and may help students "
    "build the patience needed for hard problems. Future work will test whether a randomized "
    "reading program produces the same gains."
)

#: ~40 varied, non-empty English texts from 3 to ~150 words, for exercising
#: batching, length sorting and label diversity.  Fixed; do not reorder.
SAMPLE_TEXTS: list[str] = [
    "Hello there, friend.",
    "Buy cheap watches now!",
    "The cat sat quietly.",
    "Stocks fell sharply on Monday.",
    "Click here to claim your free prize today!!!",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The home team won the match with a late goal in the final minute.",
    "Preheat the oven, then bake the cookies for twelve minutes until golden.",
    "I think the new phone is great, but the battery life could be better.",
    "Photosynthesis converts light energy into chemical energy stored in sugar.",
    "Our quarterly revenue grew eight percent, driven by strong demand for cloud software.",
    "lol that was the funniest thing i have seen all week",
    "The committee will review every application before the end of the month.",
    "Rain is expected across the north tonight, with snow possible on higher ground.",
    "To install the package, run the setup script and restart your computer.",
    "She walked along the river at dawn, listening to the birds and the slow water.",
    "The central bank kept interest rates unchanged, citing uncertainty in global markets.",
    "Wear a helmet, check your brakes, and always signal before you turn.",
    "My grandmother's soup recipe uses carrots, onions, celery, a little salt, and a lot of patience.",
    "The museum's new exhibit explores three centuries of maps and the people who drew them.",
    "Error 404: the page you requested could not be found on this server.",
    "Vote for the candidate who will fix the roads and lower your taxes!",
    "Scientists observed a distant star dimming in a pattern that suggests an orbiting planet.",
    "The quick brown fox jumps over the lazy dog.",
    "After months of training, the young runner finished her first marathon in under four hours.",
    "Read the question carefully, show your work, and check every answer before you hand in the test.",
    "The software update fixes a security problem that could let attackers read private messages.",
    "Dogs need regular exercise, fresh water, a balanced diet, and plenty of attention from their family.",
    "Ancient farmers learned to plant seeds near rivers, where floods left rich soil every spring.",
    "The new policy requires companies to report their energy use and carbon emissions each year.",
    (
        "When the power went out during the storm, the whole street gathered on one porch with "
        "candles, a radio, and far too many snacks, and nobody wanted to go home when the lights "
        "came back."
    ),
    (
        "The team spent two weeks cleaning the data, removing duplicate records and fixing "
        "mislabeled rows, before they trained the first model and measured its accuracy on a "
        "held-out test set."
    ),
    (
        "Learning a second language takes time: start with common words, listen to native "
        "speakers, practice speaking every day even when it feels awkward, and do not be afraid "
        "of making mistakes."
    ),
    (
        "The old lighthouse on the island has guided ships for more than a century, and "
        "volunteers now keep it open for visitors who climb the narrow stairs to see the sea "
        "from the top."
    ),
    (
        "Limited time offer!!! Get three months of premium access for the price of one, no "
        "credit card required, cancel anytime, and receive a free gift when you sign up before "
        "midnight."
    ),
    _LONG_1,
    _LONG_2,
    _LONG_3,
    "Good morning, everyone.",
    "Is this seat taken?",
]
