"""The student presets and target kinds by name: light, so that ``distill --help`` imports no model code."""

PRESETS = ("tfidf", "kimcnn-word", "kimcnn-char", "minilm-head", "minilm")
TARGETS = ("auto", "soft", "hard")
