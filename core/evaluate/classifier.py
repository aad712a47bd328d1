"""A small CNN that tells cancerous from non-cancerous PCam patches, trained by the tool itself.

Its penultimate layer is the feature space KID and FID are measured in (no weights are downloaded:
ImageNet features say little about H&E tissue, and Inception-FID is not comparable anyway), and its
predictions score class fidelity. It is trained on a dataset's train split at the resolution and
preprocessing of the runs it will judge, and reports accuracy and ROC AUC on the held-out split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data import PatchStream, open_split, selected_indices, to_model_input
from core.data.sources import PatchSource, check_resolution
from core.errors import BadInput

FEATURES = 128
ARCHITECTURE = 1
TRAINED_ON = "trained_on.json"  # beside classifier.pt: the patches it learned from (training_record)


def conv_block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class PatchClassifier(nn.Module):
    """Four conv blocks (32, 64, 128, 128 channels) halving the resolution after each of the first
    three, global average pooling to FEATURES values, a linear layer to the 2 classes."""

    def __init__(self):
        super().__init__()
        widths = (32, 64, 128, FEATURES)
        layers, c_in = [], 3
        for i, c in enumerate(widths):
            layers.append(conv_block(c_in, c))
            if i < len(widths) - 1:
                layers.append(nn.AvgPool2d(2))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(FEATURES, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def check_classifier_fits(image_size: int, batch_size: int, device) -> None:
    """Refuse a `classifier train` whose step would not fit in the device's memory, with the same
    estimate and message as `train` (core.train.resources): a batch of a billion patches grew
    memory for minutes, without output, until the OOM killer came."""
    from core.data.sources import PATCH_SHAPE
    from core.train.resources import FLOAT_BYTES, TRAIN_BYTES_PER_PARAM, check_fits, fmt_bytes

    parameters = sum(p.numel() for p in PatchClassifier().parameters())
    # kept for the backward pass: each conv block's six outputs (widths 32, 64, 128, 128, halving
    # the size after the first three) and its pooled output; the patch as read, as floats and cropped
    values, size, c_in = 4 * int(np.prod(PATCH_SHAPE)), image_size, 3
    for c in (32, 64, 128, FEATURES):
        values += (c_in + 6 * c) * size**2 + c * (size // 2) ** 2
        size, c_in = size // 2, c
    activation_bytes = values * batch_size * FLOAT_BYTES
    check_fits(parameters * TRAIN_BYTES_PER_PARAM + activation_bytes, device,
               f"classifier training (--batch-size {batch_size} at {image_size} px: {fmt_bytes(activation_bytes)} "
               "of activations)", "lower --batch-size")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counting half
    (the Mann-Whitney U statistic divided by n_pos * n_neg)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class ClassifierReport:
    accuracy: float
    auc: float
    n: int  # held-out patches it was scored on
    split: str
    steps: int
    trained_on: dict  # which patches it learned from (training_record)


def training_record(source) -> dict:
    """Exactly which patches a classifier trains on, to be kept beside its weights: a PCam train
    split is fixed by its files; a Kaggle split is recomputed from whatever CSV is there at the
    time, so its ids are recorded (sorted, with their SHA-256 to compare records quickly)."""
    ids = getattr(source, "ids", None)
    if ids is None:
        return {"layout": "pcam", "split": "train"}
    ordered = sorted(ids)
    return {"layout": "kaggle", "split": "train", "sha256": hashlib.sha256("\n".join(ordered).encode()).hexdigest(),
            "ids": ordered}


def seen_in(record: dict | None, source, split: str) -> list[str] | None:
    """The Kaggle ids of `source` (the evaluation's split `split`) that a classifier with training
    record `record` learned from; none for PCam, whose held-out splits are their own files. None:
    unknown (a Kaggle classifier from before records were kept)."""
    ids = getattr(source, "ids", None)
    if ids is None:
        return [] if split != "train" else [f"train[{i}]" for i in range(len(source))]
    if record is None or record.get("layout") != "kaggle":
        return None
    seen = set(record["ids"])
    return [i for i in ids if i in seen]


def held_out_patches(root: Path, split: str, image_size: int, preprocess: str, limit: int = 4096,
                     split_file: Path | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` patches of a split (a seeded random subset), as uint8 (n, S, S, 3), and labels."""
    from core.data.transforms import to_uint8

    source = open_split(root, split, split_file=split_file)
    try:
        idx = np.arange(len(source))
        if len(idx) > limit:
            idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
        patches = np.stack([source.read(int(i), int(i) + 1)[0] for i in idx]) if len(idx) else np.zeros((0, 96, 96, 3), np.uint8)
        labels = source.labels[idx]
    finally:
        source.close()
    return to_uint8(to_model_input(patches, image_size, preprocess, "cpu")), labels


@torch.inference_mode()
def predict(model: PatchClassifier, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, FEATURES), probability of `cancerous` (n,)) of uint8 (n, S, S, 3) images."""
    device = next(model.parameters()).device
    feats, probs = [], []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start:start + batch]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        f = model.features(x)
        feats.append(f.cpu().numpy())
        probs.append(torch.softmax(model.head(f), dim=1)[:, 1].cpu().numpy())
    if not feats:
        return np.zeros((0, FEATURES), np.float32), np.zeros(0, np.float32)
    return np.concatenate(feats).astype(np.float64), np.concatenate(probs)


def fit_classifier(source: PatchSource, indices: np.ndarray, image_size: int, preprocess: str, steps: int,
                   batch_size: int = 64, lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
                   on_step: Callable[[int, float], None] | None = None) -> PatchClassifier:
    """A classifier trained on the patches `indices` of `source` (dihedral augmentation,
    cross-entropy, AdamW), in eval mode."""
    if len(np.unique(source.labels[indices])) < 2:
        raise BadInput(f"{source.name}: the train split needs patches of both classes to train a classifier")
    check_resolution(source, image_size)
    torch.manual_seed(seed)
    stream = PatchStream(source, indices, batch_size, seed, augment=True)
    model = PatchClassifier().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    try:
        for step in range(1, steps + 1):
            images, labels, codes = stream.next_batch()
            x = to_model_input(images, image_size, preprocess, device, codes)
            loss = F.cross_entropy(model(x), torch.from_numpy(labels).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_step:
                on_step(step, float(loss.detach()))
    finally:
        stream.close()
    return model.eval()


def score(model: PatchClassifier, images: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(accuracy at probability 0.5, ROC AUC, probabilities of `cancerous`) on labelled patches."""
    _, probs = predict(model, images)
    return float(((probs >= 0.5) == labels.astype(bool)).mean()), roc_auc(probs, labels), probs


def scoring_data(root: Path) -> Path:
    """Where a classifier trained on `root` is scored: its own held-out split, or, for a synthetic
    set (which has a train split only), the held-out split of the real data its run learned from."""
    from core.data import resolve_data
    from core.synthetic import read_manifest

    manifest = read_manifest(root)
    return resolve_data(manifest["source_data"]) if manifest is not None else root


def train_classifier(root: Path, image_size: int, preprocess: str, steps: int, batch_size: int = 64,
                     lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
                     on_step: Callable[[int, float], None] | None = None) -> tuple[PatchClassifier, ClassifierReport]:
    """Train on the train split and score on the held-out split (`valid`, or `test` where there is
    no valid split; a synthetic set's are the real data's: scoring_data)."""
    source = open_split(root, "train")
    try:
        trained_on = training_record(source)
        model = fit_classifier(source, selected_indices(source, "both"), image_size, preprocess, steps, batch_size,
                               lr, seed, device, on_step)
    finally:
        source.close()
    held_out_root = scoring_data(root)
    for split in ("valid", "test"):
        try:
            images, labels = held_out_patches(held_out_root, split, image_size, preprocess)
        except BadInput:
            continue
        if len(images):
            break
    else:
        raise BadInput(f"{held_out_root}: no valid or test split to score the classifier on")
    accuracy, auc, _ = score(model, images, labels)
    return model, ClassifierReport(accuracy, auc, len(labels), split, steps, trained_on)


def save_classifier(model: PatchClassifier, path: Path, meta: dict, trained_on: dict) -> None:
    """The weights, and beside them (TRAINED_ON) the record of the patches they learned from."""
    from core.train.checkpoint import save_atomic

    trained_on_path = path.with_name(TRAINED_ON)
    temporary = trained_on_path.with_name(f".{TRAINED_ON}.tmp")
    temporary.write_text(json.dumps(trained_on) + "\n")
    temporary.replace(trained_on_path)
    save_atomic({"model": model.state_dict(), "architecture": ARCHITECTURE, "meta": meta, "step": 0}, path)


def read_training_record(weights: Path) -> dict | None:
    """The record save_classifier kept beside a classifier's weights (None: none was kept)."""
    path = Path(weights).with_name(TRAINED_ON)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: not a readable training record ({exc.__class__.__name__})") from None


def load_classifier(path: Path, device="cpu") -> PatchClassifier:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = PatchClassifier()
        model.load_state_dict(state["model"])
    except Exception as exc:  # a missing, truncated or foreign file
        raise BadInput(f"{path}: not a readable classifier ({exc.__class__.__name__})") from None
    return model.to(device).eval()
