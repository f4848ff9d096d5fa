"""Multi-scale block masks for the Stage-1 cross-modal MAE (paper, Cross-Modal Self-Supervised
Learning; masking after Wald et al. 2025, "Revisiting MAE pre-training for 3D medical image
segmentation").

A mask M has shape (B, 1, *spatial) with 1 = masked. For every case of a batch:

1. one block edge ``s`` is drawn uniformly from ``block_sizes`` (default 8, 16 and 32 voxels), so
   a batch mixes fine and coarse masks: small blocks teach texture, large ones anatomy;
2. along each axis the block edge is ``min(s, axis // 2)`` (at least 1): a block never spans more
   than half the patch, so even a 16^3 patch has 8 blocks to choose from;
3. the patch is tiled by a grid of ``ceil(axis / edge)`` blocks per axis, anchored at the origin
   (the last block of an axis is cropped when the edge does not divide the patch);
4. exactly ``round(ratio * number_of_blocks)`` blocks are masked, drawn without replacement.

The masked fraction of *blocks* is therefore exact; the masked fraction of *voxels* is exact when the
edges divide the patch and otherwise deviates by the cropped blocks' share.

**One mask for all channels of a case.** The channels of a case are co-registered: with a separate
mask per channel, a masked T1ce voxel could be copied from the visible T1/T2/FLAIR voxel at the same
place, and Eq. 9 (X^F from X^L and X^P) would reduce to channel copying instead of learning what the
privileged channel adds. The limited view X^L is cut from the masked X^F, so both views hide the same
voxels and the three losses (Eqs. 7-9) score the same region.

Masked voxels are set to 0, the mean of every channel after nnU-Net's z-score normalisation.
The random draws come from a CPU ``torch.Generator`` (deterministic under ``seed``); only the small
block grid is drawn there (and copied from pinned memory, so the copy does not wait for the GPU), the
voxel mask is expanded on the target device.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

DEFAULT_BLOCK_SIZES = (8, 16, 32)


def block_edges(spatial_shape: Sequence[int], block_size: int) -> Tuple[int, ...]:
    """Per-axis block edge for one scale: ``min(block_size, axis // 2)``, at least 1."""
    return tuple(max(1, min(int(block_size), int(a) // 2)) for a in spatial_shape)


class MultiScaleBlockMasker:
    """Draws block masks as described in the module docstring.

    ``masker(batch_size, spatial_shape, device)`` returns a float tensor (B, 1, *spatial) of 0/1.
    """

    def __init__(self, ratio: float = 0.75, block_sizes: Sequence[int] = DEFAULT_BLOCK_SIZES,
                 seed: Optional[int] = None):
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
        if len(block_sizes) == 0 or any(int(s) < 1 for s in block_sizes):
            raise ValueError(f"block sizes must be positive integers, got {list(block_sizes)}")
        self.ratio = float(ratio)
        self.block_sizes = tuple(int(s) for s in block_sizes)
        self.generator = torch.Generator()
        self.reseed(seed)

    def reseed(self, seed: Optional[int]) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def _case_grid(self, spatial_shape: Sequence[int]) -> Tuple[torch.Tensor, Tuple[int, ...]]:
        s = self.block_sizes[int(torch.randint(len(self.block_sizes), (1,), generator=self.generator))]
        edges = block_edges(spatial_shape, s)
        grid_shape = tuple(math.ceil(a / e) for a, e in zip(spatial_shape, edges))
        n = math.prod(grid_shape)
        k = int(round(self.ratio * n))
        grid = torch.zeros(n, dtype=torch.bool)
        grid[torch.randperm(n, generator=self.generator)[:k]] = True
        return grid.view(grid_shape), edges

    def __call__(self, batch_size: int, spatial_shape: Sequence[int],
                 device: torch.device = torch.device("cpu")) -> torch.Tensor:
        spatial_shape = tuple(int(a) for a in spatial_shape)
        if len(spatial_shape) not in (2, 3):
            raise ValueError(f"masks are for 2D or 3D patches, got spatial shape {spatial_shape}")
        masks = []
        for _ in range(batch_size):
            grid, edges = self._case_grid(spatial_shape)
            if torch.device(device).type == "cuda":
                grid = grid.pin_memory()   # a pageable host->device copy would wait for the queued GPU work
            m = grid.to(device, non_blocking=True)
            for axis, e in enumerate(edges):
                m = m.repeat_interleave(e, dim=axis)
            masks.append(m[tuple(slice(0, a) for a in spatial_shape)])
        return torch.stack(masks)[:, None].float()


def apply_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the masked voxels of every channel: ``x * (1 - M)``, M broadcast over channels."""
    return x * (1 - mask).to(x.dtype)
