"""One pass with three classifiers vs. the three one after another, on real text.

    python benchmarks/bench_multi_classifier.py [--docs 300] [--layers 2] [--repeat 3] [--nemo-lengths]

Data: Debian package descriptions (``Description-en`` of
``/var/lib/apt/lists/*bookworm_main_i18n_Translation-en.lz4``, read with ``lz4cat``; the
packaged sample ``nemo_cls_dask/data/debian_sample.parquet`` if that file is missing), a
fixed random sample written as an 8-file parquet folder.

Models: three checkpoints in NVIDIA's "Deberta" head layout (the layout of
nvidia/quality-classifier-deberta, domain-classifier, content-type-classifier-deberta) with
random weights, DeBERTa-v3-shaped: the width of microsoft/deberta-v3-xsmall (hidden 384,
6 heads, FFN 1536, relative attention with 256 position buckets) and ``--layers`` of its 12
layers (default 2, so that the run takes a few minutes on 2 CPU cores). Each checkpoint
folder carries its own copy of one tokenizer, as the real repos do: a SentencePiece-style
unigram vocabulary (32k pieces, trained here on the descriptions, so token counts are
realistic) in a ``DebertaV2Tokenizer``.

Timed, in this one process (dask's synchronous scheduler, torch on all cores), models
loaded and warmed up first, over the same parquet folder (best of ``--repeat`` rounds;
wall time and this process's CPU time, which other load on a shared machine disturbs less):

* ``one pass``: ``classify(ddf, [a, b, c])`` - each partition read once, text cleaned and
  tokenized once (the three share the tokenizer and, unless ``--nemo-lengths``, the lengths);
* ``chained``: ``c(b(a(ddf)))`` - one graph, each partition read once, tokenized 3 times;
* ``separate``: ``a(ddf)``, ``b(ddf)``, ``c(ddf)`` computed one after another - 3 reads, 3
  tokenizations.

``--nemo-lengths`` gives the three NeMo Curator's own lengths (6000/1024, 2000/512,
5000/1024 characters/tokens): then no two share a tokenization, and one pass saves only
the repeated reads. Prints docs/s of each and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dask  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

TRANSLATIONS = Path("/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en.lz4")
SAMPLE = Path(__file__).resolve().parent.parent / "nemo_cls_dask" / "data" / "debian_sample.parquet"
LABELS = {
    "quality": ["High", "Medium", "Low"],
    "domain": [f"domain_{i}" for i in range(26)],
    "content": [f"content_{i}" for i in range(11)],
}
NEMO_LENGTHS = {"quality": (6000, 1024), "domain": (2000, 512), "content": (5000, 1024)}


def read_descriptions() -> tuple[list[str], str]:
    """All English package descriptions (short line + long text), and where they came from."""
    if not TRANSLATIONS.is_file():
        return pd.read_parquet(SAMPLE)["text"].tolist(), str(SAMPLE)
    raw = subprocess.run(["lz4cat", str(TRANSLATIONS)], check=True, capture_output=True, text=True).stdout
    texts = []
    for block in raw.split("\n\n"):
        lines = block.split("\n")
        start = next((i for i, line in enumerate(lines) if line.startswith("Description-en:")), None)
        if start is None:
            continue
        body = [lines[start][len("Description-en:") :].strip()]
        for line in lines[start + 1 :]:
            if not line.startswith(" "):
                break
            body.append("" if line.strip() == "." else line[1:])
        texts.append("\n".join(body).strip())
    return texts, f"{TRANSLATIONS} (Description-en)"


def train_tokenizer(texts: list[str], folder: Path, vocab_size: int):
    """A DeBERTa-v3-style unigram tokenizer trained on ``texts`` (ids: [PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import DebertaV2Tokenizer

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]"], unk_token="[UNK]", show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    vocab = [tuple(item) for item in json.loads(tokenizer.to_str())["model"]["vocab"]] + [("[MASK]", 0.0)]
    deberta = DebertaV2Tokenizer(vocab=vocab, do_lower_case=False, split_by_punct=False, model_max_length=512)
    deberta.save_pretrained(folder)
    return deberta


def backbone_config(vocab_size: int, layers: int):
    from transformers import DebertaV2Config

    return DebertaV2Config(  # microsoft/deberta-v3-xsmall's shape, with `layers` layers
        vocab_size=vocab_size, hidden_size=384, num_hidden_layers=layers, num_attention_heads=6,
        intermediate_size=1536, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=0,
        relative_attention=True, position_buckets=256, max_relative_positions=-1, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False, layer_norm_eps=1e-7,
        pad_token_id=0,
    )  # fmt: skip


def write_checkpoints(root: Path, texts: list[str], layers: int) -> dict[str, Path]:
    """Three random-weight head checkpoints in NVIDIA's layout, each with a copy of one tokenizer."""
    from safetensors.torch import save_file
    from transformers import AutoModel

    tokenizer_dir = root / "tokenizer"
    tokenizer = train_tokenizer(texts, tokenizer_dir, 32000)
    config = backbone_config(len(tokenizer), layers)
    backbone_dir = root / "backbone"
    config.save_pretrained(backbone_dir)
    folders = {}
    for seed, (name, labels) in enumerate(LABELS.items()):
        torch.manual_seed(seed)
        holder = torch.nn.Module()
        holder.model = AutoModel.from_config(config)
        holder.fc = torch.nn.Linear(config.hidden_size, len(labels))
        folder = root / name
        folder.mkdir()
        save_file({k: v.contiguous() for k, v in holder.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(
            json.dumps(
                {
                    "base_model": str(backbone_dir),
                    "fc_dropout": 0.2,
                    "id2label": {str(i): label for i, label in enumerate(labels)},
                    "label2id": {label: i for i, label in enumerate(labels)},
                    "max_len": 512,
                }
            )
        )
        for file in tokenizer_dir.iterdir():
            (folder / file.name).write_bytes(file.read_bytes())
        folders[name] = folder
    return folders


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def timed_cpu(function) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (less sensitive to other load on the machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; the best of each is reported")
    parser.add_argument("--nemo-lengths", action="store_true", help="NeMo Curator's max_chars/max_seq_length per model")
    args = parser.parse_args()

    from nemo_cls_dask.classifiers import DistributedDataClassifier, classify
    from nemo_cls_dask.engine import engine_stats, reset_engine_stats
    from nemo_cls_dask.models.loading import get_model
    from nemo_cls_dask.tokenization import clean_texts, encode

    torch.set_num_threads(os.cpu_count() or 1)
    texts, source = read_descriptions()
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), size=min(args.docs, len(texts)), replace=False)]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        folders = write_checkpoints(root, texts[:10000], args.layers)
        setup = time.perf_counter() - start
        data = root / "data"
        dd.from_pandas(pd.DataFrame({"text": sample}), npartitions=args.partitions).to_parquet(data, write_index=False)

        classifiers = []
        for name, folder in folders.items():
            chars, tokens = NEMO_LENGTHS[name] if args.nemo_lengths else (2000, 512)
            classifiers.append(
                DistributedDataClassifier(
                    model_identifier=str(folder), label_field=f"{name}_pred", max_chars=chars, max_seq_length=tokens,
                    device="cpu",
                )  # fmt: skip
            )
        for classifier in classifiers:  # load and warm up outside the timings
            get_model(classifier.model_identifier, None, "cpu")
            classifier(pd.DataFrame({"text": sample[:16]}))
        a, b, c = classifiers

        loaded = get_model(a.model_identifier, None, "cpu")
        clean, valid = clean_texts(sample, a.max_chars)
        tokenize_s = timed(lambda: encode(loaded.tokenizer, clean, valid, a.max_seq_length or 512))
        lengths = encode(loaded.tokenizer, clean, valid, a.max_seq_length or 512).lengths

        def one_pass():
            classify(dd.read_parquet(data), classifiers).compute()

        def chained():
            ddf = dd.read_parquet(data)
            c(b(a(ddf))).compute()

        def separate():
            for classifier in classifiers:
                classifier(dd.read_parquet(data)).compute()

        variants = {"one pass": one_pass, "chained": chained, "separate": separate}
        best = {name: float("inf") for name in variants}
        best_cpu = {name: float("inf") for name in variants}
        with dask.config.set(scheduler="sync"):
            for _ in range(args.repeat):
                for name, function in variants.items():
                    reset_engine_stats()
                    seconds, cpu = timed_cpu(function)
                    print(f"    ({name}: {seconds:.2f} s wall, {cpu:.2f} s CPU)", flush=True)
                    best[name] = min(best[name], seconds)
                    best_cpu[name] = min(best_cpu[name], cpu)
        stats = engine_stats()

    n = len(sample)
    print(f"data: {n} docs from {source}; median {int(np.median([len(t) for t in sample]))} chars, "
          f"median {int(np.median(lengths))} tokens (max_seq_length {a.max_seq_length}), {args.partitions} partitions")  # fmt: skip
    print(f"models: 3 x DeBERTa-v3-xsmall-shaped head checkpoints, hidden 384, {args.layers} layers, random weights, "
          f"one tokenizer (32k unigram); lengths: {'NeMo defaults' if args.nemo_lengths else 'all 2000 chars / 512 tokens'}")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), dask sync scheduler; "
          f"setup {setup:.0f} s; best of {args.repeat}")  # fmt: skip
    print(f"tokenizing the {n} docs once: {tokenize_s:.2f} s; last run's batches: {stats.get('batches', 0)}")
    for name, seconds in best.items():
        print(f"  {name:<9} {seconds:7.2f} s  {n / seconds:7.1f} docs/s   (CPU {best_cpu[name]:6.2f} s)")
    for other in ("chained", "separate"):
        print(f"one pass vs {other + ':':<9} {best[other] / best['one pass']:.3f}x wall, "
              f"{best_cpu[other] / best_cpu['one pass']:.3f}x CPU")  # fmt: skip


if __name__ == "__main__":
    main()
