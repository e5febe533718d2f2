"""Classification metrics accumulated as counts, so they sum across processes."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from adaptformer.engine import dist


class ClassificationMeter:
    def __init__(self, num_classes: int, topk: tuple = (1, 5)):
        self.num_classes = num_classes
        self.topk = tuple(k for k in topk if k <= num_classes) or (1,)
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.float64)  # rows: true, cols: predicted
        self.correct_topk = np.zeros(len(self.topk), dtype=np.float64)
        self.loss_sum = 0.0
        self.count = 0.0
        self.targets: List[np.ndarray] = []  # this process's labels and top-1 predictions, in loader order
        self.predictions: List[np.ndarray] = []

    def update(self, logits: np.ndarray, labels: np.ndarray, loss_sum: float) -> None:
        labels = labels.reshape(-1).astype(np.int64)
        order = np.argsort(-logits, axis=1)
        for i, k in enumerate(self.topk):
            self.correct_topk[i] += (order[:, :k] == labels[:, None]).any(axis=1).sum()
        np.add.at(self.confusion, (labels, order[:, 0]), 1)
        self.targets.append(labels)
        self.predictions.append(order[:, 0])
        self.loss_sum += float(loss_sum)
        self.count += len(labels)

    def all_reduce(self) -> None:
        packed = np.concatenate([self.confusion.ravel(), self.correct_topk, [self.loss_sum, self.count]])
        packed = dist.all_reduce_sum(packed)
        n = self.confusion.size
        self.confusion = packed[:n].reshape(self.confusion.shape)
        self.correct_topk = packed[n : n + len(self.topk)]
        self.loss_sum, self.count = float(packed[-2]), float(packed[-1])

    def result(self) -> Dict:
        count = max(self.count, 1.0)
        out = {f"top{k}": float(self.correct_topk[i] / count) for i, k in enumerate(self.topk)}
        out["loss"] = self.loss_sum / count
        out["num_samples"] = int(self.count)
        return out

    def per_class(self, class_names: List[str]) -> Dict[str, float]:
        totals = self.confusion.sum(axis=1)
        return {
            name: (float(self.confusion[i, i] / totals[i]) if totals[i] else float("nan"))
            for i, name in enumerate(class_names)
        }
