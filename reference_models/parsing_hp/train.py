"""Train the high-precision parsing model (Inception + ASPP) and export parsing_hp.onnx.

    python -m optkit.reference_models.parsing_hp.train [--iters 800]

Same data and crops as the real-time model (see parsing/train.py); crops are 160x208 so that the
stride-16 map during training (10x13) is, like the deployed 15x20 one, smaller than the atrous rates.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..parsing.train import batches, render_dataset
from ..people import PARTS
from ..training import TrainLog, export_onnx, seed_everything
from .model import ParsingHPNet

HERE = Path(__file__).parent
H, W = 240, 320
TRAIN_SEED = 5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=800)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "parsing_hp.onnx")
    args = ap.parse_args()
    seed_everything(args.seed)
    recipe = {"iters": args.iters, "batch": args.batch, "crop": [160, 208], "samples": args.samples,
              "optimizer": "AdamW lr 3e-3 one-cycle", "loss": "cross-entropy"}
    log = TrainLog("parsing_hp", args.seed, recipe)
    images, labels = render_dataset(args.samples, TRAIN_SEED + args.seed)
    model = ParsingHPNet(len(PARTS))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.iters, pct_start=0.1)
    data = batches(images, labels, np.random.default_rng(args.seed), args.batch, 160, 208)
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
