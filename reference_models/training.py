"""Shared training utilities (torch, the `train` extra): seeding, blocks, the loop's bookkeeping and
ONNX export. Evaluation never imports this module."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def arguments(iters: int, batch: int, out: Path, samples: int = 3000) -> argparse.Namespace:
    """The command line every training script takes (defaults differ per model)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--samples", type=int, default=samples)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=out)
    return ap.parse_args()


def seed_everything(seed: int, threads: int = 2) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1,
                act: bool = True) -> nn.Sequential:
    pad = dilation * (k // 2)
    layers = [nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 4, dilation: int = 1, k: int = 3):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn_act(cin, mid, 1),
            conv_bn_act(mid, mid, k, stride, groups=mid, dilation=dilation),
            conv_bn_act(mid, cout, 1, act=False),
        )

    def forward(self, x):
        y = self.body(x)
        return x + y if self.use_res else y


def export_onnx(model: nn.Module, example: tuple, path: Path, input_names: list[str],
                output_names: list[str], dynamic_axes: dict | None = None) -> None:
    """Export in eval mode, opset 17, with the legacy exporter (deterministic, no dynamo)."""
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, example, str(tmp), input_names=input_names, output_names=output_names,
                      opset_version=17, dynamo=False, do_constant_folding=True, dynamic_axes=dynamic_axes)
    import onnx

    m = onnx.load(str(tmp))
    m.producer_name, m.producer_version = "optkit-reference-models", "1"
    onnx.checker.check_model(m, full_check=True)
    path.write_bytes(m.SerializeToString(deterministic=True))
    tmp.unlink()


def fit(model: nn.Module, next_loss, iters: int, lr: float, log: TrainLog, weight_decay: float = 1e-4) -> None:
    """The loop every reference model trains with: AdamW (Adam when weight_decay is 0), one-cycle
    learning rate, one batch per step. `next_loss(it)` draws a batch and returns its loss."""
    opt = (torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay) if weight_decay
           else torch.optim.Adam(model.parameters(), lr=lr))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=iters, pct_start=0.1)
    model.train()
    for it in range(iters):
        loss = next_loss(it)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        log.step(it, loss.item())


class TrainLog:
    """Loss curve and a summary written next to the model (train_log.json)."""

    def __init__(self, name: str, seed: int, recipe: dict):
        self.name, self.seed, self.recipe = name, seed, recipe
        self.start = time.time()
        self.points: list[tuple[int, float]] = []

    def step(self, it: int, loss: float, every: int = 50) -> None:
        if it % every == 0:
            self.points.append((it, round(float(loss), 5)))
            print(f"[{self.name}] iter {it} loss {loss:.4f} ({time.time() - self.start:.0f}s)", flush=True)

    def write(self, path: Path, extra: dict) -> None:
        summary = {"model": self.name, "seed": self.seed, "recipe": self.recipe,
                   "train_seconds": round(time.time() - self.start), "machine": f"{platform.machine()} "
                   f"{torch.get_num_threads()} threads, torch {torch.__version__}",
                   "loss_curve": self.points, **extra}
        path.write_text(json.dumps(summary, indent=2) + "\n")


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8/float → N x 3 x H x W float in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    return x.permute(0, 3, 1, 2).contiguous()
