"""The fixed vocabularies, tokenizer and backbone configs of the fabricated checkpoints."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Hidden size of every fabricated backbone (``fc.weight`` is ``[num_labels, 32]``).
TINY_HIDDEN_SIZE = 32

_SUPPORTED_ARCHS = ("bert", "deberta")

# Weight scales.  The backbone is initialised much "hotter" than the usual 0.02
# so that attention is far from uniform and the [CLS] state really depends on
# the text; the heads use std 1.0 so that logits are spread out and different
# texts land on clearly different argmax labels instead of near-uniform
# probabilities.
_BACKBONE_STD = 0.5
_EMBEDDING_STD = 1.0
_HEAD_STD = 1.0

# ---------------------------------------------------------------------------
# Fixed vocabulary
# ---------------------------------------------------------------------------

# A fixed list of common English words.  Its order defines token ids, so it must
# never be generated (sets, trained vocabularies) -- only edited by hand, and any
# edit changes every fabricated checkpoint.
_WORDS: tuple[str, ...] = tuple(
    """
    the of and to a in is it you that he was for on are with as i his they be at
    one have this from or had by hot but some what there we can out other were all
    your when up use word how said an each she which do their time if will way about
    many then them would write like so these her long make thing see him two has look
    more day could go come did my sound no most number who over know water than call
    first people may down side been now find any new work part take get place made
    live where after back little only round man year came show every good me give our
    under name very through just form much great think say help low line before turn
    cause same mean differ move right boy old too does tell sentence set three want
    air well also play small end put home read hand port large spell add even land
    here must big high such follow act why ask men change went light kind off need
    house picture try us again animal point mother world near build self earth father
    head stand own page should country found answer school grow study still learn
    plant cover food sun four thought let keep eye never last door between city tree
    cross since hard start might story saw far sea draw left late run while press
    close night real life few stop open seem together next white children begin got
    walk example ease paper often always music those both mark book letter until mile
    river car feet care second group carry took rain eat room friend began idea fish
    mountain north once base hear horse cut sure watch color face wood main enough
    plain girl usual young ready above ever red list though feel talk bird soon body
    dog family direct pose leave song measure state product black short numeral class
    wind question happen complete ship area half rock order fire south problem piece
    told knew pass farm top whole king size heard best hour better true during hundred
    am remember step early hold west ground interest reach fast five sing listen six
    table travel less morning ten simple several vowel toward war lay against pattern
    slow center love person money serve appear road map science rule govern pull cold
    notice voice fall power town fine certain fly unit lead cry dark machine note wait
    plan figure star box noun field rest correct able pound done beauty drive stood
    contain front teach week final gave green oh quick develop sleep warm free minute
    strong special mind behind clear tail produce fact street inch lot nothing course
    stay wheel full force blue object decide surface deep moon island foot yet busy
    test record boat common gold possible plane age dry wonder laugh thousand ago ran
    check game shape yes cool miss brought heat snow bed bring sit perhaps fill east
    weight language among data model market price company government report research
    computer software energy health team season player match goal win lost
    recipe cook bake salt sugar oven minutes cup student teacher university policy
    hello buy cheap today level won phone into grew eight percent demand cloud seen
    review month expected across tonight higher install package restart walked along
    listening birds bank kept rates global markets signal soup uses museum maps drew
    error requested not server vote fix roads lower taxes scientists observed planet
    brown fox jumps lazy months training finished hours carefully update security
    private messages dogs regular exercise fresh plenty attention ancient farmers
    learned seeds rivers rich soil spring requires companies storm gathered radio
    nobody wanted lights spent weeks cleaning records fixing rows trained measured its
    held learning takes words speakers practice speaking afraid making mistakes ships
    century visitors stairs offer access credit card required cancel receive gift sign
    midnight council met debate bus lines airport streets cars weekends traffic
    workers cannot shop owners fewer parking spaces businesses already nearly public
    comment voted program mayor promised monthly numbers sales officials expect buses
    needs funding budget without major changes section bread prepared foods mix flour
    seven fifty remains bowl thirty times strength repeat twice ball heavy pot inside
    twenty remove completely researchers followed students schools years reading
    later performance reported least average income books authors effect smaller
    programs argue provide needed problems future whether produces everyone seat taken
    """.split()
)

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _bert_vocab() -> dict[str, int]:
    """WordPiece vocabulary: specials, words, single chars, ``##`` continuations.

    Every lowercase ASCII word can be spelled as ``x ##y ##z``, so English text
    never falls back to ``[UNK]`` except for characters outside the fixed set.
    """
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(_WORDS)
    tokens += list(_LETTERS) + list(_DIGITS) + list(_PUNCTUATION)
    tokens += ["##" + c for c in _LETTERS + _DIGITS]
    return {tok: i for i, tok in enumerate(_dedupe(tokens))}


def _deberta_vocab() -> list[tuple[str, float]]:
    """SentencePiece-unigram style vocabulary mimicking DeBERTa-v3's layout.

    Ids follow deberta-v3: ``[PAD]`` 0, ``[CLS]`` 1, ``[SEP]`` 2, ``[UNK]`` 3,
    and ``[MASK]`` after the ordinary pieces.  Word-initial pieces carry the
    ``▁`` (U+2581) marker.  Scores are fixed log-probabilities chosen so that
    whole words beat spelling them out letter by letter.
    """
    pieces: list[tuple[str, float]] = [
        ("[PAD]", 0.0),
        ("[CLS]", 0.0),
        ("[SEP]", 0.0),
        ("[UNK]", 0.0),
    ]
    seen = {p for p, _ in pieces}

    def add(piece: str, score: float) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, score))

    for word in _WORDS:
        add("\u2581" + word, -5.0)
    add("\u2581", -8.0)
    for ch in _LETTERS + _DIGITS + _PUNCTUATION:
        add("\u2581" + ch, -9.0)
    for ch in _LETTERS + _DIGITS + _PUNCTUATION:
        add(ch, -10.0)
    add("[MASK]", 0.0)
    return pieces


# ---------------------------------------------------------------------------
# Tokenizers, configs, weights
# ---------------------------------------------------------------------------


def make_tokenizer(arch: str = "deberta", *, max_len: int = 512):
    """Build the fixed-vocabulary fast tokenizer used by the fabricated checkpoints.

    ``arch="deberta"`` gives a ``DebertaV2Tokenizer`` (unigram, ``▁`` word
    markers, ``[CLS] ... [SEP]``, ``[PAD]`` id 0) like deberta-v3's;
    ``arch="bert"`` gives a WordPiece ``BertTokenizer``.  Both lowercase and
    split punctuation.  They are built through the model-specific classes
    (rather than a generic ``PreTrainedTokenizerFast``) because in
    transformers 5 ``AutoTokenizer`` re-creates those classes from the saved
    vocabulary and their own ``__init__`` options, so what is saved reloads to
    exactly the same pipeline.  ``model_max_length`` is set to ``max_len``.
    """
    _check_arch(arch)
    if arch == "deberta":
        from transformers import DebertaV2Tokenizer

        return DebertaV2Tokenizer(
            vocab=_deberta_vocab(),
            do_lower_case=True,
            split_by_punct=True,
            model_max_length=max_len,
        )
    from transformers import BertTokenizer

    return BertTokenizer(vocab=_bert_vocab(), do_lower_case=True, model_max_length=max_len)


def tiny_backbone_config(arch: str = "deberta", *, vocab_size: int | None = None, **overrides: Any):
    """Return the tiny ``DebertaV2Config`` / ``BertConfig`` used for fabricated models.

    ``vocab_size`` defaults to the size of :func:`make_tokenizer`'s vocabulary;
    ``overrides`` are passed to the config class (e.g. ``num_labels``).
    """
    _check_arch(arch)
    if vocab_size is None:
        vocab_size = len(_deberta_vocab()) if arch == "deberta" else len(_bert_vocab())
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=TINY_HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    if arch == "deberta":
        from transformers import DebertaV2Config

        params = dict(
            common,
            relative_attention=True,
            position_buckets=32,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            type_vocab_size=0,
        )
        params.update(overrides)
        return DebertaV2Config(**params)
    from transformers import BertConfig

    params = dict(common)
    params.update(overrides)
    return BertConfig(**params)


def _check_arch(arch: str) -> None:
    if arch not in _SUPPORTED_ARCHS:
        raise ValueError(f"arch must be one of {_SUPPORTED_ARCHS}, got {arch!r}")
