"""A user's own network, as the engine meets it through ``--model tests/models/own_net.py:build``:
a residual block with BatchNorms and an in-place sum, a squeeze-excitation gate, a layer scale, a
LayerNorm and functional activations in a hand-written forward, and a Linear classifier."""
import torch
import torch.nn.functional as F
from torch import nn


class Gate(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.squeeze = nn.Linear(channels, channels // 2)
        self.excite = nn.Linear(channels // 2, channels)

    def forward(self, x):
        scale = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean((2, 3))))))
        return x * scale[:, :, None, None]


class OwnNet(nn.Module):
    def __init__(self, channels=8, classes=7):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.gate = Gate(channels)
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), 0.5))
        self.norm = nn.LayerNorm(channels)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer_scale * self.gate(self.bn2(self.conv2(out)))
        out += x
        out = F.relu(out)
        return self.fc(self.norm(F.adaptive_avg_pool2d(out, 1).flatten(1)))


def build():
    return OwnNet()


def broken():
    raise RuntimeError("no GPU here")


def not_a_module():
    return "resnet"


def wrong_output():
    return nn.Sequential(nn.Conv2d(3, 4, 3))


def no_linear():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
