"""Gesture detector: SSD heads on an FPN over a MnasNet-like backbone (MBConv blocks with 3x3 and 5x5
depthwise kernels). Input 1x3x256x256; outputs `scores` (1 x N x 4, softmax) and `deltas` (1 x N x 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..training import InvertedResidual, conv_bn_act
from .anchors import ANCHORS_PER_CELL

CLASSES = 4  # background + rock, paper, scissors


class GestureNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_act(3, 16, 3, 2), conv_bn_act(16, 16, 3, groups=16),
                                  conv_bn_act(16, 16, 1, act=False))                           # /2
        self.c4 = nn.Sequential(InvertedResidual(16, 24, 2, 3), InvertedResidual(24, 24, 1, 3))    # /4
        self.c8 = nn.Sequential(InvertedResidual(24, 40, 2, 3, k=5), InvertedResidual(40, 40, 1, 3, k=5))  # /8
        self.c16 = nn.Sequential(InvertedResidual(40, 80, 2, 4), InvertedResidual(80, 80, 1, 4),
                                 InvertedResidual(80, 96, 1, 4))                                  # /16
        self.c32 = nn.Sequential(InvertedResidual(96, 128, 2, 4, k=5), InvertedResidual(128, 128, 1, 4, k=5))  # /32
        self.lateral = nn.ModuleList([nn.Conv2d(c, 64, 1) for c in (40, 96, 128)])
        self.smooth = nn.ModuleList([nn.Sequential(conv_bn_act(64, 64, 3, groups=64), conv_bn_act(64, 64, 1))
                                     for _ in range(3)])
        self.cls = nn.Conv2d(64, ANCHORS_PER_CELL * CLASSES, 3, padding=1)   # shared across levels
        self.box = nn.Conv2d(64, ANCHORS_PER_CELL * 4, 3, padding=1)

    def features(self, x):
        c8 = self.c8(self.c4(self.stem(x)))
        c16 = self.c16(c8)
        c32 = self.c32(c16)
        p32 = self.lateral[2](c32)
        p16 = self.lateral[1](c16) + F.interpolate(p32, scale_factor=2.0, mode="nearest")
        p8 = self.lateral[0](c8) + F.interpolate(p16, scale_factor=2.0, mode="nearest")
        return [s(p) for s, p in zip(self.smooth, (p8, p16, p32))]

    def forward(self, x, logits: bool = False):
        cls, box = [], []
        for f in self.features(x):
            n = f.shape[0]
            cls.append(self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, CLASSES))
            box.append(self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4))
        cls, box = torch.cat(cls, 1), torch.cat(box, 1)
        return (cls if logits else torch.softmax(cls, -1)), box
