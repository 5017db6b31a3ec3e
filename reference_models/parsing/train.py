"""Train the real-time parsing model on generated people and export parsing.onnx.

    python -m reference_models.parsing.train [--iters 1500] [--seed 0]

Random 128x160 crops of full-resolution (240x320) renders keep the people at deployment scale while
cutting the cost of each step by 4; the network is fully convolutional and is exported at 240x320.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..people import PARTS, sample
from ..training import TrainLog, arguments, export_onnx, fit, seed_everything, to_tensor_images
from .model import ParsingNet

HERE = Path(__file__).parent
H, W = 240, 320
TRAIN_SEED = 0          # the evaluation set uses another seed (see task.py)


def render_dataset(n: int, seed: int, h: int = H, w: int = W):
    images = np.zeros((n, h, w, 3), np.uint8)
    labels = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        s = sample(seed, i, h, w, people=1)
        images[i] = (s.image * 255 + 0.5).astype(np.uint8)
        labels[i] = s.parts
    return images, labels


def batches(images, labels, rng, batch: int, ch: int, cw: int):
    n, h, w = labels.shape
    while True:
        idx = rng.integers(0, n, batch)
        ys, xs = rng.integers(0, h - ch + 1, batch), rng.integers(0, w - cw + 1, batch)
        flip = rng.random(batch) < 0.5
        xb = np.stack([images[i, y:y + ch, x:x + cw] for i, y, x in zip(idx, ys, xs)])
        yb = np.stack([labels[i, y:y + ch, x:x + cw] for i, y, x in zip(idx, ys, xs)])
        xb[flip], yb[flip] = xb[flip, :, ::-1], yb[flip, :, ::-1]
        yield to_tensor_images(xb), torch.from_numpy(yb.astype(np.int64))


def train_segmenter(name: str, model: torch.nn.Module, args, crop: tuple[int, int], train_seed: int) -> None:
    """Render the scenes, train with cross-entropy on random crops, export at 240x320 (shared with parsing_hp).
    The caller seeds (seed_everything) before building the model, so initialisation is reproducible."""
    recipe = {"iters": args.iters, "batch": args.batch, "crop": list(crop), "samples": args.samples,
              "optimizer": "AdamW lr 3e-3 one-cycle, wd 1e-4", "loss": "cross-entropy"}
    log = TrainLog(name, args.seed, recipe)
    images, labels = render_dataset(args.samples, train_seed + args.seed)
    data = batches(images, labels, np.random.default_rng(args.seed), args.batch, *crop)

    def next_loss(_it):
        x, y = next(data)
        return F.cross_entropy(model(x), y)

    fit(model, next_loss, args.iters, 3e-3, log)
    export_onnx(model, (torch.zeros(1, 3, H, W),), args.out, ["image"], ["logits"])
    log.write(args.out.with_name("train_log.json"), {"params": sum(p.numel() for p in model.parameters())})


def main() -> None:
    args = arguments(1500, 16, HERE / "parsing.onnx")
    seed_everything(args.seed)
    train_segmenter("parsing", ParsingNet(len(PARTS)), args, (128, 160), TRAIN_SEED)


if __name__ == "__main__":
    main()
