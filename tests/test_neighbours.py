"""Chunked nearest directions by cosine (models/neighbours.py)."""

import torch

from autointerp.models.neighbours import nearest_by_cosine


def test_a_permuted_copy_finds_each_row_at_cosine_one_whatever_the_chunk():
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(500, 32, generator=gen)
    order = torch.randperm(500, generator=gen)
    for chunk in (7, 128, 1000):
        found = nearest_by_cosine(keys[order] * 3.0, keys, k=4, chunk=chunk)
        assert torch.equal(found.indices[:, 0], order)
        assert torch.allclose(found.cosines[:, 0], torch.ones(500), atol=1e-5)
        assert (found.cosines[:, 1:] < 0.9).all()


def test_within_one_set_a_row_is_not_its_own_neighbour_and_absolute_finds_flipped_rows():
    base = torch.randn(50, 16, generator=torch.Generator().manual_seed(1))
    rows = torch.cat([base, -base[:1]])  # row 50 is row 0 flipped
    plain = nearest_by_cosine(rows, k=3, chunk=8)
    assert not (plain.indices == torch.arange(51).unsqueeze(1)).any()
    flipped = nearest_by_cosine(rows, k=1, chunk=8, absolute=True)
    assert flipped.indices[0, 0] == 50 and flipped.cosines[0, 0] < -0.999
