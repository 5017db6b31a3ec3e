"""Train the real-time parsing model on generated people and export parsing.onnx.

    python -m reference_models.parsing.train [--iters 1500] [--seed 0]

Random 128x160 crops of full-resolution (240x320) renders keep the people at deployment scale while
cutting the cost of each step by 4; the network is fully convolutional and is exported at 240x320.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..people import PARTS, sample
from ..training import TrainLog, export_onnx, seed_everything, to_tensor_images
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "parsing.onnx")
    args = ap.parse_args()
    seed_everything(args.seed)
    recipe = {"iters": args.iters, "batch": args.batch, "crop": [128, 160], "samples": args.samples,
              "optimizer": "AdamW lr 3e-3 cosine, wd 1e-4", "loss": "cross-entropy"}
    log = TrainLog("parsing", args.seed, recipe)
    images, labels = render_dataset(args.samples, TRAIN_SEED + args.seed)
    model = ParsingNet(len(PARTS))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.iters, pct_start=0.1)
    data = batches(images, labels, np.random.default_rng(args.seed), args.batch, 128, 160)
    model.train()
    for it in range(args.iters):
        x, y = next(data)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        log.step(it, loss.item())
    export_onnx(model, (torch.zeros(1, 3, H, W),), args.out, ["image"], ["logits"])
    log.write(args.out.with_name("train_log.json"), {"params": sum(p.numel() for p in model.parameters())})


if __name__ == "__main__":
    main()
