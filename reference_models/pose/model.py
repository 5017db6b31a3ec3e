"""Pose: MobileNetV2-style encoder to stride 16, a decoder that fuses stride-16 context into stride-8
features, and OpenPose-style heads: keypoint heatmaps (14 joints + background) and part affinity
fields (2 channels per limb), with one refinement stage that sees both. Input 1x3x320x320."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..people import JOINTS, LIMBS
from ..training import InvertedResidual, conv_bn_act

HEATMAPS = len(JOINTS) + 1
PAFS = 2 * len(LIMBS)


def _head(cin: int, cout: int, mid: int = 64) -> nn.Sequential:
    return nn.Sequential(conv_bn_act(cin, mid, 1), conv_bn_act(mid, mid, 3, groups=mid), conv_bn_act(mid, mid, 1),
                         conv_bn_act(mid, mid, 3, groups=mid, dilation=2), nn.Conv2d(mid, cout, 1))


class PoseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder8 = nn.Sequential(
            conv_bn_act(3, 24, 3, 2),                                  # /2
            InvertedResidual(24, 24, 1, 1),
            InvertedResidual(24, 32, 2, 4), InvertedResidual(32, 32, 1, 4),   # /4
            InvertedResidual(32, 48, 2, 4), InvertedResidual(48, 48, 1, 4), InvertedResidual(48, 48, 1, 4),  # /8
        )
        self.encoder16 = nn.Sequential(
            InvertedResidual(48, 96, 2, 4), InvertedResidual(96, 96, 1, 4), InvertedResidual(96, 128, 1, 4),
            InvertedResidual(128, 128, 1, 4, dilation=2),
        )
        self.fuse = conv_bn_act(48 + 128, 128, 1)
        self.stage1_heat, self.stage1_paf = _head(128, HEATMAPS), _head(128, PAFS)
        refine_in = 128 + HEATMAPS + PAFS
        self.stage2_heat, self.stage2_paf = _head(refine_in, HEATMAPS, 80), _head(refine_in, PAFS, 80)

    def forward(self, x, all_stages: bool = False):
        f8 = self.encoder8(x)
        f16 = self.encoder16(f8)
        f = self.fuse(torch.cat([f8, F.interpolate(f16, size=f8.shape[-2:], mode="bilinear",
                                                   align_corners=False)], 1))
        h1, p1 = self.stage1_heat(f), self.stage1_paf(f)
        g = torch.cat([f, h1, p1], 1)
        h2, p2 = self.stage2_heat(g), self.stage2_paf(g)
        if all_stages:
            return (h1, p1), (h2, p2)
        return h2, p2
