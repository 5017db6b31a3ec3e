"""Controllable style transfer: a stroke-pyramid network. A shared encoder feeds three branches whose
receptive fields grow (dilation 1, 2, 4), each trained for a different stroke size; a gate computed from
the `brush` input (in [0, 1]) blends them, so brush size varies continuously. Inputs: image 1x3xHxW
(H, W dynamic, multiples of 4) and brush 1x1; output 1x3xHxW in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BRUSH_CENTRES = (0.0, 0.5, 1.0)
GATE_TEMPERATURE = 0.05


def _block(c: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, groups=c), nn.InstanceNorm2d(c, affine=True),
                         nn.ReLU(inplace=True), nn.Conv2d(c, c, 1), nn.InstanceNorm2d(c, affine=True))


class Branch(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.blocks = nn.ModuleList([_block(c, dilation) for _ in range(3)])

    def forward(self, x):
        for b in self.blocks:
            x = F.relu(x + b(x))
        return x


class StrokePyramidNet(nn.Module):
    def __init__(self, c: int = 48):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 5, padding=2), nn.InstanceNorm2d(16, affine=True), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, 2, 1), nn.InstanceNorm2d(32, affine=True), nn.ReLU(inplace=True),
            nn.Conv2d(32, c, 3, 2, 1), nn.InstanceNorm2d(c, affine=True), nn.ReLU(inplace=True))
        self.branches = nn.ModuleList([Branch(c, d) for d in (1, 2, 4)])
        self.register_buffer("centres", torch.tensor(BRUSH_CENTRES).view(1, -1))
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, 32, 3, padding=1),
            nn.InstanceNorm2d(32, affine=True), nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(32, 16, 3, padding=1),
            nn.InstanceNorm2d(16, affine=True), nn.ReLU(inplace=True), nn.Conv2d(16, 3, 5, padding=2))

    def gates(self, brush):
        """Soft selection of branches by distance of the brush setting to each branch's centre."""
        return torch.softmax(-((brush - self.centres) ** 2) / GATE_TEMPERATURE, dim=1)   # N x 3

    def forward(self, image, brush):
        f = self.encoder(image)
        g = self.gates(brush)
        mixed = sum(g[:, k].view(-1, 1, 1, 1) * branch(f) for k, branch in enumerate(self.branches))
        return torch.sigmoid(self.decoder(mixed))
