"""The channels-last path of the U-Net: InstanceNorm2d against numpy, formats kept, the NormUnet unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.model.norm_unet import NormUnet
from utils.model.unet import InstanceNorm2d, pad_to_multiple


def numpy_instance_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(axis=(-2, -1), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(-2, -1), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


@pytest.mark.parametrize("shape", [(1, 18, 24, 20), (3, 5, 7, 9)])
def test_channels_last_instance_norm_matches_numpy(shape):
    rng = np.random.default_rng(0)
    x = 3.0 * rng.standard_normal(shape) + 2.0  # an offset mean, as after a convolution
    tensor = torch.from_numpy(x.astype(np.float32)).contiguous(memory_format=torch.channels_last)
    out = InstanceNorm2d(shape[1])(tensor)
    assert out.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(out.numpy(), numpy_instance_norm(x), atol=2e-6)


def test_channels_last_instance_norm_gradient():
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    norm = InstanceNorm2d(4)
    assert torch.autograd.gradcheck(norm, (x.requires_grad_(),))
    weights = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    (norm(x) * weights).sum().backward()
    reference = x.detach().contiguous().requires_grad_()
    (torch.nn.functional.instance_norm(reference) * weights).sum().backward()
    torch.testing.assert_close(x.grad, reference.grad)


def test_pad_to_multiple_keeps_channels_last():
    x = torch.randn(1, 2, 64, 60).contiguous(memory_format=torch.channels_last)
    padded, _ = pad_to_multiple(x, 16)
    assert padded.shape == (1, 2, 64, 64) and padded.is_contiguous(memory_format=torch.channels_last)


def test_norm_unet_equals_its_channels_first_run():
    torch.manual_seed(0)
    norm_unet = NormUnet(chans=8, num_pools=2)
    image = torch.randn(2, 1, 20, 18, 2, requires_grad=True)
    out = norm_unet(image)  # channels-last inside on CPU
    (out * out).sum().backward()
    grad = image.grad.clone()

    plain = NormUnet(chans=8, num_pools=2)
    plain.load_state_dict(norm_unet.state_dict())
    plain.forward = lambda x: _channels_first_forward(plain, x)
    image.grad = None
    reference = plain(image)
    (reference * reference).sum().backward()
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, image.grad, rtol=1e-4, atol=1e-4)


def _channels_first_forward(norm_unet: NormUnet, image: torch.Tensor) -> torch.Tensor:
    """fastMRI's NormUnet forward written out, channels-first throughout."""
    batch, _, height, width, _ = image.shape
    x = image.permute(0, 4, 1, 2, 3).reshape(batch, 2, height, width)
    var, mean = torch.var_mean(x, dim=(-2, -1), unbiased=True, keepdim=True)
    std = var.sqrt()
    x = norm_unet.unet((x - mean) / std) * std + mean
    return x.view(batch, 2, 1, height, width).permute(0, 2, 3, 4, 1)
