"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest

from ae_support import random_vgg16_weights


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A VGG-16 state dict in torchvision's format (random weights: the real ones cannot be fetched here)."""
    return random_vgg16_weights(tmp_path_factory.mktemp("vgg") / "vgg16.pth")
