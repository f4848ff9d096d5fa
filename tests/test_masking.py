"""Multi-scale block masks (dante_nnunet.networks.masking): ratio, scales, seed, 2D/3D, odd patch sizes."""
import math

import pytest
import torch

from dante_nnunet.networks.masking import MultiScaleBlockMasker, apply_mask, block_edges


def _is_blocky(case_mask: torch.Tensor, edge: int) -> bool:
    """True if the (spatial) mask is constant on every edge^d block of an origin-anchored grid."""
    d = case_mask.ndim
    shape = []
    for a in case_mask.shape:
        shape += [a // edge, edge]
    blocks = case_mask.reshape(shape)
    reduce_axes = tuple(range(1, 2 * d, 2))
    return bool((blocks.amax(reduce_axes) == blocks.amin(reduce_axes)).all())


@pytest.mark.parametrize("shape", [(32, 32, 32), (64, 48)])
def test_exact_ratio_and_block_structure_single_scale(shape):
    masker = MultiScaleBlockMasker(0.75, block_sizes=(8,), seed=1)
    m = masker(4, shape)
    assert m.shape == (4, 1, *shape) and m.dtype == torch.float32
    assert set(m.unique().tolist()) == {0.0, 1.0}
    n_blocks = math.prod(a // 8 for a in shape)
    for case in m[:, 0]:
        assert _is_blocky(case, 8)
        assert case.sum().item() == round(0.75 * n_blocks) * 8 ** len(shape)   # exactly 75% of blocks


def test_each_case_draws_one_of_the_scales():
    masker = MultiScaleBlockMasker(0.5, block_sizes=(4, 16), seed=3)
    m = masker(40, (32, 32, 32))[:, 0]
    coarse = [_is_blocky(c, 16) for c in m]
    assert all(_is_blocky(c, 4) for c in m)
    assert 5 < sum(coarse) < 35          # both scales drawn (P(fine mask is 16-blocky) ~ 0)
    assert all(abs(c.mean().item() - 0.5) < 1e-6 for c in m)


def test_same_seed_same_masks_other_seed_other_masks():
    a = MultiScaleBlockMasker(seed=5)(3, (32, 32, 32))
    b = MultiScaleBlockMasker(seed=5)(3, (32, 32, 32))
    c = MultiScaleBlockMasker(seed=6)(3, (32, 32, 32))
    assert torch.equal(a, b) and not torch.equal(a, c)
    masker = MultiScaleBlockMasker(seed=5)
    first = masker(3, (32, 32, 32))
    masker.reseed(5)
    assert torch.equal(first, masker(3, (32, 32, 32)))


def test_block_never_exceeds_half_the_patch_and_odd_sizes_are_covered():
    assert block_edges((16, 16, 16), 32) == (8, 8, 8)
    assert block_edges((20, 13, 7), 8) == (8, 6, 3)
    assert block_edges((1, 40), 8) == (1, 8)
    # 16^3 patch: every scale becomes 8^3 blocks, 6 of 8 masked
    m = MultiScaleBlockMasker(0.75, seed=0)(5, (16, 16, 16))
    assert torch.allclose(m.mean((1, 2, 3, 4)), torch.full((5,), 0.75))
    # edges that do not divide the patch: last blocks cropped, ratio close to 75%
    m = MultiScaleBlockMasker(0.75, block_sizes=(8,), seed=0)(200, (20, 13, 7))
    assert m.shape == (200, 1, 20, 13, 7)
    assert abs(m.mean().item() - 0.75) < 0.03


def test_one_mask_for_all_channels_and_masked_voxels_zeroed():
    x = torch.randn(2, 4, 16, 16) + 5
    m = MultiScaleBlockMasker(seed=0)(2, (16, 16))
    y = apply_mask(x, m)
    masked = m.expand_as(x).bool()
    assert (y[masked] == 0).all()
    assert torch.equal(y[~masked], x[~masked])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="ratio"):
        MultiScaleBlockMasker(1.5)
    with pytest.raises(ValueError, match="block sizes"):
        MultiScaleBlockMasker(0.75, block_sizes=(0, 8))
    with pytest.raises(ValueError, match="2D or 3D"):
        MultiScaleBlockMasker()(1, (16,))
