"""Face landmarks: a MobileNetV2-style backbone on a 128x128 face crop, global pooling of the last two
stages, and a linear head regressing 68 (x, y) pairs normalised to [0, 1]. Output 1 x 136."""

from __future__ import annotations

import torch
from torch import nn

from ..faces import LANDMARKS
from ..training import InvertedResidual, conv_bn_act


class FaceLandmarkNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.s8 = nn.Sequential(conv_bn_act(3, 16, 3, 2), InvertedResidual(16, 24, 2, 3), InvertedResidual(24, 24, 1, 3),
                                InvertedResidual(24, 32, 2, 4), InvertedResidual(32, 32, 1, 4))     # 16x16
        self.s16 = nn.Sequential(InvertedResidual(32, 64, 2, 4), InvertedResidual(64, 64, 1, 4),
                                 InvertedResidual(64, 96, 1, 4))                                   # 8x8
        self.s32 = nn.Sequential(InvertedResidual(96, 128, 2, 4), InvertedResidual(128, 128, 1, 4))  # 4x4
        self.head = nn.Linear(96 + 128 + 128 * 16, 2 * LANDMARKS)

    def forward(self, x):
        f16 = self.s16(self.s8(x))
        f32 = self.s32(f16)
        # pooled context plus the 4x4 map flattened: keeps where things are, which pooling alone loses
        feats = torch.cat([f16.mean((2, 3)), f32.mean((2, 3)), f32.flatten(1)], 1)
        return torch.sigmoid(self.head(feats))
