"""The transformer training loop of :class:`~nemo_cls_dask.TextClassifier` (one ``fit`` call).

:class:`TransformerRun` prepares the data chunk by chunk (a dask frame one partition at a
time), runs the epochs (AdamW, warmup + decay through ``transformers.get_scheduler``,
optional autocast, gradient accumulation, gradual unfreezing), validates after each epoch,
stops early and restores the best weights, and tunes the multi-label thresholds. With a
frozen backbone the pooled embeddings are computed once and only the head trains.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..batching import pad_batch, plan_batches
from ..engine import BatchSettings, autocast_dtype, run_model
from ..errors import NemoClsDaskError
from ..models.heads import BackboneHeadModel, pool, right_align
from ..models.loading import LoadedModel, ModelInfo
from ..progress import progress_bar
from ..tokenization import EncodedTexts, encode
from . import data as D
from .base import SINGLE_LABEL
from .metrics import outcome_metrics, tune_thresholds
from .optim import lr_schedule, parameter_depths, parameter_groups


class TrainingError(NemoClsDaskError, RuntimeError):
    """Training diverged (non-finite loss) or cannot proceed."""


class PooledBackbone(nn.Module):
    """The backbone + pooling of a head model: outputs the pooled vector (for cached embeddings)."""

    def __init__(self, head_model: BackboneHeadModel) -> None:
        super().__init__()
        self.head_model = head_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = right_align(input_ids, attention_mask)
        hidden = self.head_model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.head_model.pooling)



class TransformerRun:
    """One call of ``fit``: data preparation, the epoch loop, validation and early stopping."""

    def __init__(self, est: Any, model: BackboneHeadModel, tokenizer: Any, device: torch.device,
                 train: D.FrameSource, valid: D.FrameSource | None, label2id: dict[str, int] | None,
                 loss_weights: torch.Tensor | None, n_rows: int, progress: bool | None = None) -> None:
        self.est, self.model, self.tokenizer, self.device = est, model, tokenizer, device
        self.progress = progress  # True/False, or None: bars when stderr is a terminal
        self.train_source, self.valid_source = train, valid
        self.label2id, self.loss_weights = label2id, loss_weights
        self.problem = est.problem_type
        self.split = valid is None and est.validation_fraction > 0
        self.has_validation = valid is not None or self.split
        self.cache_chunks = not train.is_dask
        self._chunks: dict[tuple[int, str], tuple[EncodedTexts, np.ndarray, np.ndarray]] = {}
        self._embeddings: dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]] = {}
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, Any] | None = None
        self.n_rows = n_rows
        self.n_train_rows = int(round(n_rows * (1 - est.validation_fraction))) if self.split else n_rows
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.dtype = autocast_dtype(device, est.autocast)
        scale = est.target_scale_
        self.scale = None if scale is None else tuple(torch.as_tensor(a, device=device) for a in scale)

    # ---------------------------------------------------------------- data

    def _prepared(self, index: int, side: str) -> tuple[EncodedTexts, np.ndarray, np.ndarray]:
        key = (index, side)
        if key in self._chunks:
            return self._chunks[key]
        source = self.valid_source if side == "valid" and not self.split else self.train_source
        est = self.est
        part = source.chunk(index)
        what = source.what
        target = D.encode_targets(part, est.problem, source.label_fields, est.label_sep, self.label2id, what)
        weights = D.sample_weights_of(part, what)
        texts = D.texts_of(part, source.text_field)
        if self.split:
            rng = np.random.default_rng([est.seed, index, 7])
            mask = D.split_mask(len(part), est.validation_fraction, rng, target if self.problem == SINGLE_LABEL else None)
            rows = np.flatnonzero(mask if side == "valid" else ~mask)
            texts = [texts[i] for i in rows]
            target, weights = target[rows], weights[rows]
        encoded = encode(self.tokenizer, texts, np.ones(len(texts), dtype=bool), int(est.max_len))
        result = (encoded, target, weights)
        if self.cache_chunks or (side == "valid" and self.valid_source is not None and not self.valid_source.is_dask):
            self._chunks[key] = result
        return result

    def _n_chunks(self, side: str) -> int:
        if side == "valid" and not self.split:
            return self.valid_source.n_chunks
        return self.train_source.n_chunks

    # ---------------------------------------------------------------- loss

    def _loss(self, outputs: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted mean loss of a batch (sample weights multiply each row's loss)."""
        outputs = outputs.float()
        if not self.problem.is_classifier:
            mean, std = self.scale
            rows = ((outputs - (target - mean) / std) ** 2).mean(dim=1)
        elif not self.problem.multi_label:
            rows = nn.functional.cross_entropy(outputs, target, weight=self.loss_weights, reduction="none")
        else:
            rows = nn.functional.binary_cross_entropy_with_logits(
                outputs, target, pos_weight=self.loss_weights, reduction="none"
            ).mean(dim=1)
        return (rows * weights).mean()

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        if not torch.isfinite(loss):
            raise TrainingError(
                f"The training loss became {loss.item()} at epoch {epoch + 1}, batch {step + 1}. Lower "
                f"learning_rate, check the targets and sample weights for inf values, or train in fp32 "
                f"(autocast=False)."
            )

    # ---------------------------------------------------------------- training

    def _optimizer(self, train_backbone: bool) -> torch.optim.Optimizer:
        est = self.est
        groups = parameter_groups(
            self.model,
            learning_rate=est.learning_rate,
            head_learning_rate=est.head_learning_rate if est.head_learning_rate is not None else est.learning_rate,
            weight_decay=est.weight_decay,
            layerwise_lr_decay=est.layerwise_lr_decay,
            train_backbone=train_backbone,
        )
        for group in groups:
            group.pop("names")
        return torch.optim.AdamW(groups, lr=est.learning_rate, weight_decay=est.weight_decay)

    def _set_lr(self, optimizer: torch.optim.Optimizer, rows_seen: int) -> float:
        factor = self.schedule(min(rows_seen, self.schedule_steps))  # the split's row count is an estimate
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return factor

    def train(self) -> None:
        est = self.est
        if est.frozen_backbone:
            self._train_head()
        else:
            self._train_full()
        if self.restore_state is not None:
            self.model.load_state_dict(self.restore_state)

    def _progress_bar(self, epoch: int, total: int):
        return progress_bar(total, desc=f"epoch {epoch + 1}/{self.est.epochs}", unit="row", progress=self.progress)

    def _train_full(self) -> None:
        est, model = self.est, self.model
        depths = parameter_depths(model)
        optimizer = self._optimizer(train_backbone=True)
        scaler = torch.amp.GradScaler("cuda") if (self.dtype == torch.float16 and self.device.type == "cuda") else None
        cast = (lambda: torch.autocast(self.device.type, dtype=self.dtype)) if self.dtype is not None else None
        total_rows = max(self.n_train_rows * est.epochs, 1)
        self.schedule, self.schedule_steps = lr_schedule(est.lr_schedule, est.warmup_ratio, total_rows), total_rows
        seen = 0
        accumulation = est.gradient_accumulation_steps
        self._early_setup()
        for epoch in range(est.epochs):
            started = time.perf_counter()
            if est.gradual_unfreezing:
                for name, parameter in model.named_parameters():
                    parameter.requires_grad_(depths[name] < epoch)
            rng = np.random.default_rng([est.seed, epoch, 11])
            model.train()
            bar = self._progress_bar(epoch, self.n_train_rows)
            loss_sum, loss_rows, step, pending = 0.0, 0, 0, 0
            optimizer.zero_grad(set_to_none=True)
            for index in rng.permutation(self._n_chunks("train")):
                encoded, target, weights = self._prepared(int(index), "train")
                if encoded.num_rows == 0:
                    continue
                batches = plan_batches(encoded.lengths, rng.permutation(encoded.num_rows), batch_tokens=est.batch_tokens, max_batch_rows=est.max_batch_rows)
                for b in rng.permutation(len(batches)):
                    rows = batches[b]
                    input_ids, attention_mask = pad_batch(encoded, rows, self.pad_id)
                    input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
                    y = torch.as_tensor(target[rows], device=self.device)
                    w = torch.as_tensor(weights[rows], device=self.device)
                    if cast is not None:
                        with cast():
                            outputs = model(input_ids, attention_mask)
                    else:
                        outputs = model(input_ids, attention_mask)
                    loss = self._loss(outputs, y, w)
                    self._check_finite(loss, epoch, step)
                    scaled = loss / accumulation
                    (scaler.scale(scaled) if scaler else scaled).backward()
                    pending += 1
                    seen += len(rows)
                    if pending == accumulation:
                        self._step(optimizer, scaler, seen)
                        pending = 0
                    loss_sum += loss.detach().item() * len(rows)
                    loss_rows += len(rows)
                    step += 1
                    bar.update(len(rows))
                    bar.set_postfix(loss=f"{loss_sum / loss_rows:.4f}", refresh=False)
            if pending:
                self._step(optimizer, scaler, seen)
            for parameter in model.parameters():
                parameter.requires_grad_(True)
            stop = self._end_epoch(epoch, loss_sum / max(loss_rows, 1), bar, started, self.validation_outputs)
            if stop:
                break

    def _step(self, optimizer, scaler, rows_seen: int) -> None:
        self._set_lr(optimizer, rows_seen)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # --- frozen backbone: pooled embeddings once, then the head alone

    def _embed(self, side: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        if side in self._embeddings:
            return self._embeddings[side]
        pooled = PooledBackbone(self.model).eval()
        hidden = self.model.fc.in_features
        info = ModelInfo(path=Path("."), layout="head", problem_type="embedding", labels=None, num_outputs=hidden,
                         max_len=int(self.est.max_len), tokenizer_path=Path("."), config={})
        loaded = LoadedModel(info, pooled, self.tokenizer, self.device)
        vectors, targets, weights = [], [], []
        total = {"train": self.n_train_rows, "valid": self.n_rows - self.n_train_rows if self.split else None}[side]
        bar = progress_bar(total, desc=f"embedding {side} rows", unit="row", progress=self.progress)
        for index in range(self._n_chunks(side)):
            encoded, target, weight = self._prepared(index, side)
            vectors.append(run_model(loaded, encoded, BatchSettings(batch_tokens=None, autocast=self.est.autocast), on_batch=bar.update))
            bar.update(int((~encoded.valid).sum()))  # rows without text are not batched
            targets.append(target)
            weights.append(weight)
        bar.close()
        hidden_states = torch.cat(vectors) if vectors else torch.zeros((0, hidden), device=self.device)
        result = (hidden_states, np.concatenate(targets), np.concatenate(weights))
        self._embeddings[side] = result
        self._chunks.clear()  # token ids are not needed any more
        return result

    def _train_head(self) -> None:
        est, model = self.est, self.model
        for parameter in model.model.parameters():
            parameter.requires_grad_(False)
        optimizer = self._optimizer(train_backbone=False)
        x, target, weights = self._embed("train")
        if self.has_validation:
            self._embed("valid")
        self.n_train_rows = len(x)
        n = len(x)
        total = max(n * est.epochs, 1)
        self.schedule, self.schedule_steps = lr_schedule(est.lr_schedule, est.warmup_ratio, total), total
        seen = 0
        self._early_setup()
        batch = est.max_batch_rows * est.gradient_accumulation_steps
        try:
            for epoch in range(est.epochs):
                started = time.perf_counter()
                model.train()
                rng = np.random.default_rng([est.seed, epoch, 13])
                order = rng.permutation(n)
                bar = self._progress_bar(epoch, n)
                loss_sum = 0.0
                for step, start in enumerate(range(0, n, batch)):
                    rows = order[start:start + batch]
                    rows_t = torch.as_tensor(rows, device=self.device)
                    outputs = model.fc(model.dropout(x[rows_t]))
                    loss = self._loss(outputs, torch.as_tensor(target[rows], device=self.device), torch.as_tensor(weights[rows], device=self.device))
                    self._check_finite(loss, epoch, step)
                    loss.backward()
                    seen += len(rows)
                    self._step(optimizer, None, seen)
                    loss_sum += loss.detach().item() * len(rows)
                    bar.update(len(rows))
                    bar.set_postfix(loss=f"{loss_sum / max(seen - epoch * n, 1):.4f}", refresh=False)
                if self._end_epoch(epoch, loss_sum / max(n, 1), bar, started, self.validation_outputs):
                    break
        finally:
            for parameter in model.model.parameters():
                parameter.requires_grad_(True)

    # ---------------------------------------------------------------- validation / early stopping

    def _early_setup(self) -> None:
        self.best_loss = math.inf
        self.bad_epochs = 0
        self.restore_state = None

    def validation_outputs(self) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Raw outputs, targets and weights of the validation rows (model in eval mode)."""
        self.model.eval()
        if self.est.frozen_backbone:
            x, target, weights = self._embed("valid")
            with torch.inference_mode():
                return self.model.fc(x).float(), target, weights
        info = ModelInfo(path=Path("."), layout="head", problem_type="", labels=None, num_outputs=self.model.fc.out_features,
                         max_len=int(self.est.max_len), tokenizer_path=Path("."), config={})
        loaded = LoadedModel(info, self.model, self.tokenizer, self.device)
        outputs, targets, weights = [], [], []
        for index in range(self._n_chunks("valid")):
            encoded, target, weight = self._prepared(index, "valid")
            outputs.append(run_model(loaded, encoded, BatchSettings(batch_tokens=None, autocast=self.est.autocast)))
            targets.append(target)
            weights.append(weight)
        return torch.cat(outputs), np.concatenate(targets), np.concatenate(weights)

    def _scaled_metrics(self, raw: torch.Tensor, target: np.ndarray, thresholds=None) -> dict[str, Any]:
        raw = raw.float()
        if self.scale is not None:
            mean, std = self.scale
            raw = raw * std + mean
        labels = sorted(self.label2id, key=self.label2id.get) if self.label2id else None
        metrics = outcome_metrics(self.problem.name, self.est._scores(raw.cpu().numpy()), target, thresholds, labels)
        metrics.pop("per_label_f1", None)
        return metrics

    def _end_epoch(self, epoch: int, train_loss: float, bar, started: float, outputs_fn) -> bool:
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss}
        stop = False
        if self.has_validation:
            raw, target, weights = outputs_fn()
            if len(target):
                with torch.no_grad():
                    loss = float(self._loss(raw, torch.as_tensor(target, device=raw.device), torch.as_tensor(weights, device=raw.device)))
                metrics = {"loss": loss} | self._scaled_metrics(raw, target)
                record["validation"] = metrics
                if loss < self.best_loss - 1e-12:
                    self.best_loss, self.bad_epochs, self.best_epoch, self.best_metrics = loss, 0, epoch + 1, metrics
                    if self.est.early_stopping_patience is not None:
                        self.restore_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                else:
                    self.bad_epochs += 1
                    patience = self.est.early_stopping_patience
                    stop = patience is not None and self.bad_epochs >= patience
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)
        shown = {"loss": f"{train_loss:.4f}"}
        for key, value in record.get("validation", {}).items():
            shown["val_" + key] = f"{value:.4f}"
        bar.set_postfix(shown, refresh=True)
        bar.close()
        if stop and self.est.verbose:
            from tqdm.auto import tqdm

            tqdm.write(f"early stopping after epoch {epoch + 1}; restoring epoch {self.best_epoch}")
        return stop

    def tune_thresholds(self) -> np.ndarray:
        n_labels = len(self.label2id)
        if not self.has_validation:
            return np.full(n_labels, 0.5)
        raw, target, _ = self.validation_outputs()
        if not len(target):
            return np.full(n_labels, 0.5)
        proba = torch.sigmoid(raw.float()).cpu().numpy()
        self._last_valid = (raw, target)
        return tune_thresholds(target > 0.5, proba, objective=self.est.threshold_objective)

    def threshold_metrics(self, thresholds: np.ndarray) -> dict[str, Any]:
        raw, target = self._last_valid
        tuned = self._scaled_metrics(raw, target, thresholds)
        return {"tuned_" + key: value for key, value in tuned.items()}
