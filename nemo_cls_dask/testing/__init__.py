"""Tiny, deterministic, offline checkpoints in the on-disk layouts of real hub repos.

The test suite cannot download ``nvidia/quality-classifier-deberta`` or
``HuggingFaceFW/fineweb-edu-classifier``, but it should still exercise the very
same loading code that real checkpoints go through.  The functions here write
small stand-ins (hidden size 32, two layers, a few hundred tokens of vocabulary)
whose *files* look like the real repos:

* :func:`make_deberta_head_checkpoint` -- the NVIDIA NeMo Curator layout: a
  plain-dict ``config.json`` (``base_model``, ``fc_dropout``, ``max_len``,
  ``id2label``, ``label2id``) read by ``PyTorchModelHubMixin``, a
  ``model.safetensors`` with the backbone under ``model.`` plus a linear head
  ``fc.weight`` / ``fc.bias``, and DeBERTa-v3 style tokenizer files.
* :func:`make_hf_sequence_checkpoint` -- an ordinary ``save_pretrained``
  ``*ForSequenceClassification`` checkpoint (single-label, multi-label or
  regression, like fineweb-edu-classifier).
* :func:`make_backbone_checkpoint` -- a bare ``AutoModel`` backbone plus
  tokenizer, e.g. as the starting point of a fine-tuning test.
* :func:`make_prompt_complexity_checkpoint` -- the multi-head layout of
  nvidia/prompt-task-and-complexity-classifier (``target_sizes`` and its maps,
  ``backbone.*`` and ``head_<i>.fc.*`` weights).
* :func:`make_nvidia_checkpoint` -- the stand-in for any ready-made NVIDIA
  classifier by its short name (``"quality"``, ``"fineweb-edu"``, ...), with
  that repo's real labels, lengths and layout; :func:`make_fake_hf_cache` puts
  such folders into a Hugging Face cache layout so hub ids resolve offline.

Everything is built from fixed vocabularies and a seeded ``torch.Generator``, so
two calls with the same arguments write byte-identical weights and tokenizer
files, and nothing touches the network or the global torch RNG.
"""


from .checkpoints import (
    PROMPT_COMPLEXITY_CONFIG,
    SAMPLE_TEXTS,
    make_backbone_checkpoint,
    make_deberta_head_checkpoint,
    make_fake_hf_cache,
    make_hf_sequence_checkpoint,
    make_nvidia_checkpoint,
    make_prompt_complexity_checkpoint,
)
from .vocab import TINY_HIDDEN_SIZE, make_tokenizer, tiny_backbone_config


__all__ = [
    "SAMPLE_TEXTS",
    "TINY_HIDDEN_SIZE",
    "PROMPT_COMPLEXITY_CONFIG",
    "make_backbone_checkpoint",
    "make_deberta_head_checkpoint",
    "make_fake_hf_cache",
    "make_hf_sequence_checkpoint",
    "make_nvidia_checkpoint",
    "make_prompt_complexity_checkpoint",
    "make_tokenizer",
    "tiny_backbone_config",
]
