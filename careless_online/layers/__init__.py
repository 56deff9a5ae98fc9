"""Keras layers of the careless_online model."""

from careless_online.layers.encoder import ImageEncoder, segment_softmax
from careless_online.layers.harmonics import HarmonicSum
from careless_online.layers.partiality import PartialityPrior
from careless_online.layers.positional import PositionalEncoding
from careless_online.layers.resnet import FeedForward, ResNet, resnet_initializer
from careless_online.layers.scale_head import ScaleHead

__all__ = [
    "FeedForward",
    "HarmonicSum",
    "ImageEncoder",
    "PartialityPrior",
    "PositionalEncoding",
    "ResNet",
    "ScaleHead",
    "resnet_initializer",
    "segment_softmax",
]
