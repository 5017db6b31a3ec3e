"""High-precision parsing (the accuracy reference): an Inception-style backbone to stride 16 and a
DeepLab ASPP head (1x1, atrous 3x3 at rates 6/12/18, image pooling → concat → 1x1 projection) with a
DeepLabV3+-style decoder. Input 1x3x240x320; output 1x6x240x320. At this input the stride-16 map is
15x20, so the rate-18 branch only ever reads padding outside its centre tap: what fuse-aspp exploits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..training import conv_bn_act


class Inception(nn.Module):
    """Parallel 1x1, 1x1→3x3, 1x1→3x3→3x3 and pool→1x1 branches, concatenated."""

    def __init__(self, cin: int, b1: int, b3: int, b5: int, bp: int):
        super().__init__()
        self.b1 = conv_bn_act(cin, b1, 1)
        self.b3 = nn.Sequential(conv_bn_act(cin, b3, 1), conv_bn_act(b3, b3, 3))
        self.b5 = nn.Sequential(conv_bn_act(cin, b5, 1), conv_bn_act(b5, b5, 3), conv_bn_act(b5, b5, 3))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_act(cin, bp, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class Reduction(nn.Module):
    """Stride-2 3x3 conv beside a stride-2 max pool, concatenated."""

    def __init__(self, cin: int, cconv: int):
        super().__init__()
        self.conv = conv_bn_act(cin, cconv, 3, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        return torch.cat([self.conv(x), self.pool(x)], 1)


class ASPP(nn.Module):
    def __init__(self, cin: int, cmid: int = 64, cout: int = 96, rates=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_act(cin, cmid, 1)] +
                                      [conv_bn_act(cin, cmid, 3, dilation=r) for r in rates])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_act(cin, cmid, 1))
        self.project = conv_bn_act(cmid * (len(rates) + 2), cout, 1)

    def forward(self, x):
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))


class ParsingHPNet(nn.Module):
    def __init__(self, classes: int = 6):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_act(3, 24, 3, 2), conv_bn_act(24, 32, 3, 2))            # /4
        self.stage8 = nn.Sequential(Reduction(32, 48), Inception(80, 24, 32, 16, 24), Inception(96, 32, 40, 16, 24))  # /8
        self.stage16 = nn.Sequential(Reduction(112, 64), Inception(176, 40, 56, 24, 32),
                                     Inception(152, 48, 64, 24, 32))                           # /16, 168 ch
        self.aspp = ASPP(168)
        self.low = conv_bn_act(32, 24, 1)
        self.decode = nn.Sequential(conv_bn_act(96 + 24, 64, 3), conv_bn_act(64, 64, 3))
        self.classifier = nn.Conv2d(64, classes, 1)

    def forward(self, x):
        s4 = self.stem(x)
        y = self.aspp(self.stage16(self.stage8(s4)))
        y = F.interpolate(y, size=s4.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decode(torch.cat([y, self.low(s4)], 1))
        return F.interpolate(self.classifier(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
