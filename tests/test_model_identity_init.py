"""``identity_init``: at step 0 the network is the data-consistent SENSE reconstruction of its input, and it learns."""
from __future__ import annotations

import numpy as np
import torch

from tests.test_model_network import equispaced_mask, masked_kspace
from tests.test_model_parts import smooth_phantom
from utils.model.feature_space import FeatureDecoder, FeatureEncoder, init_identity_pair
from utils.model.feature_varnet import FeatureVarNet
from utils.model.gate import ResidualGate
from utils.model.norm_unet import channel_mean_std
from utils.model.sensitivity import SensitivityModel
from utils.model.complex_layout import complex_to_channels
from utils.mri.fft import fft2c

SMALL = dict(feature_chans=4, unet_chans=4, pools=2, sens_chans=2, sens_pools=2, image_chans=4, image_pools=2)


def numpy_ifft2c(kspace: np.ndarray) -> np.ndarray:
    shifted = np.fft.ifftshift(kspace, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(shifted, norm="ortho"), axes=(-2, -1))


def to_complex(x: torch.Tensor) -> np.ndarray:
    x = x.detach().double().numpy()
    return x[..., 0] + 1j * x[..., 1]


def test_residual_sensitivity_model_starts_at_the_normalised_acs_images():
    coils, height, width = 4, 40, 36
    mask = equispaced_mask(width, 4, 8)
    kspace = masked_kspace(1, coils, height, width, mask) * 1e6
    torch.manual_seed(0)
    sens = to_complex(SensitivityModel(chans=2, num_pools=2, residual=True)(kspace, mask)[0])

    acs = np.zeros(width)
    acs[width // 2 - 4 : width // 2 + 4] = 1  # the 8 contiguous centre lines (every 4th line lies inside them)
    images = numpy_ifft2c(to_complex(kspace[0]) * acs)
    expected = images / np.sqrt((np.abs(images) ** 2).sum(axis=0) + 1e-12)
    np.testing.assert_allclose(sens, expected, atol=1e-5)


def test_e2e_varnet_with_identity_init_returns_the_zero_filled_rss():
    height, width = 390, 400
    mask = equispaced_mask(width, 4, 10)
    kspace = masked_kspace(1, 3, height, width, mask)
    torch.manual_seed(0)
    out = FeatureVarNet((0, 0, 2), **SMALL, identity_init=True)(kspace, mask)[0].detach().numpy()
    rss = np.sqrt((np.abs(numpy_ifft2c(to_complex(kspace[0]))) ** 2).sum(axis=0))
    expected = rss[3:387, 8:392]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_encoder_and_decoder_start_as_an_identity_pair_through_instance_norm():
    torch.manual_seed(0)
    encoder, decoder = FeatureEncoder(6), FeatureDecoder(6)
    init_identity_pair(encoder, decoder)
    image = torch.randn(2, 1, 30, 26, 2) * 5 + 3
    mean, std = channel_mean_std(complex_to_channels(image), unbiased=False)
    features = torch.nn.functional.instance_norm(encoder(image, mean, std))
    torch.testing.assert_close(decoder(features, mean, std), image, atol=1e-3, rtol=1e-4)
    assert features[:, 2:].std() > 0.5  # the other channels keep their random filters


def test_feature_varnet_starts_closer_to_the_truth_than_zero_filled_and_every_gate_learns():
    """Smooth phantom, acc4: the untrained identity-init network beats zero-filled RSS; a plain init does not."""
    coils, height, width = 4, 48, 40
    _, _, coil_images = smooth_phantom(coils, height, width)
    mask = equispaced_mask(width, 4, 8)
    kspace = fft2c(coil_images) * mask * 1e-4  # raw-data scale
    truth = torch.sqrt((coil_images**2).sum(dim=(1, -1)))[0] * 1e-4
    zero_filled = np.sqrt((np.abs(numpy_ifft2c(to_complex(kspace[0]))) ** 2).sum(axis=0))
    truth = truth.double().numpy()

    def error(model: FeatureVarNet) -> float:
        out = model(kspace, mask)[0]
        top, left = 192 - height // 2, 192 - width // 2
        return float(np.linalg.norm(out[top : top + height, left : left + width].detach().numpy() - truth) / np.linalg.norm(truth))

    torch.manual_seed(0)
    identity = FeatureVarNet((1, 1, 1), **SMALL, identity_init=True)
    torch.manual_seed(0)
    plain = FeatureVarNet((1, 1, 1), **SMALL)
    zero_filled_error = float(np.linalg.norm(zero_filled - truth) / np.linalg.norm(truth))
    assert error(identity) < zero_filled_error < error(plain)

    identity(kspace, mask).sum().backward()
    gates = [module for module in identity.modules() if isinstance(module, ResidualGate)]
    assert len(gates) == 1 + 2 + 1 + 1  # sensitivity, two feature UNets, one image conv, one image cascade
    assert all(gate.alpha.grad is not None and gate.alpha.grad.abs() > 0 for gate in gates)
