"""Train the pose model on generated multi-person scenes and export pose.onnx.

    python -m optkit.reference_models.pose.train [--iters 1600]

Random 192x192 crops of 320x320 renders keep people at deployment scale; heatmap and PAF targets are
built per crop (joints outside it are simply absent). Loss: L2 on both stages (intermediate
supervision, as in OpenPose), weighted up where the targets are non-zero: keypoints and limbs cover
a few percent of the map, and an unweighted loss settles on predicting background (it did: a first
900-iteration run peaked at 0.1-0.3 on joints and scored OKS-AP 0.001).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..people import sample
from ..training import TrainLog, arguments, export_onnx, fit, seed_everything, to_tensor_images
from .model import PoseNet
from .targets import STRIDE, make_targets

HERE = Path(__file__).parent
SIZE = 320
CROP = 192
TRAIN_SEED = 1
FOREGROUND_WEIGHT = 10.0


def render_dataset(n: int, seed: int):
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    keypoints = []
    for i in range(n):
        s = sample(seed, i, SIZE, SIZE)
        images[i] = (s.image * 255 + 0.5).astype(np.uint8)
        keypoints.append(s.keypoints)
    return images, keypoints


def batches(images, keypoints, rng, batch: int):
    n = len(images)
    while True:
        xs, heats, pafs = [], [], []
        for i in rng.integers(0, n, batch):
            y0, x0 = (rng.integers(0, (SIZE - CROP) // STRIDE + 1, 2) * STRIDE)
            kp = keypoints[i].copy()
            kp[..., 0] -= x0
            kp[..., 1] -= y0
            outside = (kp[..., 0] < 0) | (kp[..., 0] >= CROP) | (kp[..., 1] < 0) | (kp[..., 1] >= CROP)
            kp[..., 2][outside] = 0
            heat, paf = make_targets(kp, CROP, CROP)
            xs.append(images[i, y0:y0 + CROP, x0:x0 + CROP])
            heats.append(heat)
            pafs.append(paf)
        yield to_tensor_images(np.stack(xs)), torch.from_numpy(np.stack(heats)), torch.from_numpy(np.stack(pafs))


def main() -> None:
    args = arguments(1600, 12, HERE / "pose.onnx", samples=1500)
    seed_everything(args.seed)
    recipe = {"iters": args.iters, "batch": args.batch, "crop": [CROP, CROP], "samples": args.samples,
              "optimizer": "AdamW lr 3e-3 one-cycle",
              "loss": f"L2 on heatmaps and PAFs, both stages, x{1 + FOREGROUND_WEIGHT:g} where targets are non-zero"}
    log = TrainLog("pose", args.seed, recipe)
    images, keypoints = render_dataset(args.samples, TRAIN_SEED + args.seed)
    model = PoseNet()
    data = batches(images, keypoints, np.random.default_rng(args.seed), args.batch)

    def next_loss(it):
        x, heat, paf = next(data)
        stages = model(x, all_stages=True)
        w_heat = 1 + FOREGROUND_WEIGHT * heat[:, :-1].amax(1, keepdim=True)
        w_paf = 1 + FOREGROUND_WEIGHT * (paf.abs() > 0).float()
        loss = sum((w_heat * (h - heat) ** 2).mean() * 10 + (w_paf * (p - paf) ** 2).mean() * 10 for h, p in stages)
        return loss

    fit(model, next_loss, args.iters, 3e-3, log)
    export_onnx(model, (torch.zeros(1, 3, SIZE, SIZE),), args.out, ["image"], ["heatmaps", "pafs"])
    log.write(args.out.with_name("train_log.json"), {"params": sum(p.numel() for p in model.parameters())})


if __name__ == "__main__":
    main()
