"""Train the gesture detector on generated rock/paper/scissors scenes and export gesture.onnx.

    python -m optkit.reference_models.gesture.train [--iters 1200]

Loss: softmax focal loss (gamma 2) over all non-ignored anchors, normalised by the positives, plus
smooth-L1 on the positive anchors' box deltas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..hands import sample
from ..training import TrainLog, arguments, export_onnx, fit, seed_everything, to_tensor_images
from .anchors import SIZE, anchors, match
from .model import GestureNet

HERE = Path(__file__).parent
TRAIN_SEED = 2


def render_dataset(n: int, seed: int):
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    boxes, labels = [], []
    for i in range(n):
        s = sample(seed, i, SIZE, SIZE)
        images[i] = (s.image * 255 + 0.5).astype(np.uint8)
        boxes.append(s.boxes)
        labels.append(s.labels)
    return images, boxes, labels


def batches(images, boxes, labels, rng, batch: int):
    anchor = anchors()
    while True:
        xs, cls, reg = [], [], []
        for i in rng.integers(0, len(images), batch):
            img, b = images[i], boxes[i].copy()
            if rng.random() < 0.5:
                img = img[:, ::-1]
                b[:, [0, 2]] = SIZE - b[:, [2, 0]]
            c, r = match(b, labels[i], anchor)
            xs.append(img)
            cls.append(c)
            reg.append(r)
        yield to_tensor_images(np.stack(xs)), torch.from_numpy(np.stack(cls)), torch.from_numpy(np.stack(reg))


def focal_loss(logits, target, gamma: float = 2.0):
    valid = target >= 0
    logp = F.log_softmax(logits[valid], -1)
    t = target[valid]
    logpt = logp.gather(1, t[:, None])[:, 0]
    return (-(1 - logpt.exp()) ** gamma * logpt).sum()


def main() -> None:
    args = arguments(1200, 16, HERE / "gesture.onnx", samples=3000)
    seed_everything(args.seed)
    recipe = {"iters": args.iters, "batch": args.batch, "samples": args.samples, "input": [SIZE, SIZE],
              "optimizer": "AdamW lr 3e-3 one-cycle", "loss": "softmax focal (gamma 2) + smooth L1"}
    log = TrainLog("gesture", args.seed, recipe)
    images, boxes, labels = render_dataset(args.samples, TRAIN_SEED + args.seed)
    model = GestureNet()
    data = batches(images, boxes, labels, np.random.default_rng(args.seed), args.batch)

    def next_loss(it):
        x, cls, reg = next(data)
        logits, deltas = model(x, logits=True)
        pos = cls > 0
        n_pos = max(int(pos.sum()), 1)
        loss = (focal_loss(logits, cls) + F.smooth_l1_loss(deltas[pos], reg[pos], reduction="sum")) / n_pos
        return loss

    fit(model, next_loss, args.iters, 3e-3, log)
    export_onnx(model, (torch.zeros(1, 3, SIZE, SIZE),), args.out, ["image"], ["scores", "deltas"])
    log.write(args.out.with_name("train_log.json"), {"params": sum(p.numel() for p in model.parameters())})


if __name__ == "__main__":
    main()
