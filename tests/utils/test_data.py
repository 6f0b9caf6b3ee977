"""kiln.utils.data: datasets, samplers, DataLoader batching/shuffling/collation, random_split."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import kiln
from kiln.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, IterableDataset, RandomSampler,
                             SequentialSampler, Subset, SubsetRandomSampler, TensorDataset, default_collate,
                             random_split)


def _tds(n=10):
    x = kiln.arange(n * 3, dtype=kiln.float32).reshape(n, 3)
    y = kiln.arange(n)
    return TensorDataset(x, y)


def test_tensor_dataset_items_and_len():
    ds = _tds()
    assert len(ds) == 10
    x, y = ds[4]
    assert x.tolist() == [12.0, 13.0, 14.0] and int(y) == 4
    with pytest.raises(ValueError):
        TensorDataset(kiln.zeros(3), kiln.zeros(4))


@pytest.mark.parametrize("drop_last,expected", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batch_shapes_and_drop_last(drop_last, expected):
    dl = DataLoader(_tds(), batch_size=4, drop_last=drop_last)
    batches = list(dl)
    assert len(dl) == len(expected) == len(batches)
    assert [b[0].shape[0] for b in batches] == expected
    assert all(isinstance(b, list) and b[0].shape[1:] == (3,) and b[1].dtype == kiln.int64 for b in batches)
    assert batches[0][1].tolist() == [0, 1, 2, 3]  # no shuffle: sequential order


def test_shuffle_reproducible_with_seeded_generator_and_different_across_epochs():
    def orders(seed):
        dl = DataLoader(_tds(20), batch_size=5, shuffle=True, generator=kiln.Generator().manual_seed(seed))
        return [[i for b in dl for i in b[1].tolist()] for _ in range(3)]

    a, b, c = orders(7), orders(7), orders(8)
    assert a == b
    assert a != c
    assert a[0] != a[1] != a[2]
    for epoch in a:
        assert sorted(epoch) == list(range(20))


def test_shuffle_with_default_generator_follows_manual_seed():
    kiln.manual_seed(3)
    e1 = [i for b in DataLoader(_tds(12), batch_size=4, shuffle=True) for i in b[1].tolist()]
    kiln.manual_seed(3)
    e2 = [i for b in DataLoader(_tds(12), batch_size=4, shuffle=True) for i in b[1].tolist()]
    assert e1 == e2 and sorted(e1) == list(range(12)) and e1 != list(range(12))


class DictDataset(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return {"x": kiln.full((2,), float(i)), "label": i, "weight": i / 2, "name": f"s{i}",
                "arr": np.full((3,), i, dtype=np.float32), "pair": (i, kiln.tensor([i, -i]))}


def test_collate_dicts_tuples_numbers_strings_arrays():
    batch = next(iter(DataLoader(DictDataset(), batch_size=3)))
    assert set(batch) == {"x", "label", "weight", "name", "arr", "pair"}
    assert batch["x"].shape == (3, 2) and batch["x"][:, 0].tolist() == [0.0, 1.0, 2.0]
    assert batch["label"].dtype == kiln.int64 and batch["label"].tolist() == [0, 1, 2]
    assert batch["weight"].dtype == kiln.float64 and batch["weight"].tolist() == [0.0, 0.5, 1.0]
    assert batch["name"] == ["s0", "s1", "s2"]
    assert isinstance(batch["arr"], kiln.Tensor) and batch["arr"].shape == (3, 3) and batch["arr"].dtype == kiln.float32
    assert isinstance(batch["pair"], list) and batch["pair"][0].tolist() == [0, 1, 2]
    assert batch["pair"][1].tolist() == [[0, 0], [1, -1], [2, -2]]


def test_collate_floats_keep_float64_precision():
    out = default_collate([0.1, 0.2, 1 / 3])
    assert out.dtype == kiln.float64 and out.tolist() == [0.1, 0.2, 1 / 3]


def test_collate_namedtuple_and_errors():
    P = namedtuple("P", "a b")
    out = default_collate([P(1, 2.0), P(3, 4.0)])
    assert isinstance(out, P) and out.a.tolist() == [1, 3] and out.b.tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError):
        default_collate([object(), object()])


def test_collate_fn_sampler_and_batch_sampler():
    ds = _tds(10)
    dl = DataLoader(ds, batch_size=3, collate_fn=lambda samples: [int(s[1]) for s in samples])
    assert list(dl) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    dl = DataLoader(ds, batch_size=2, sampler=[9, 7, 5, 3, 1])
    assert [b[1].tolist() for b in dl] == [[9, 7], [5, 3], [1]]
    dl = DataLoader(ds, batch_sampler=[[0, 9], [4, 5, 6]])
    assert [b[1].tolist() for b in dl] == [[0, 9], [4, 5, 6]] and len(dl) == 2
    dl = DataLoader(ds, batch_size=None)
    first = next(iter(dl))
    assert first[0].shape == (3,) and len(dl) == 10
    with pytest.raises(ValueError):
        DataLoader(ds, batch_size=2, shuffle=True, sampler=[0, 1])
    with pytest.raises(ValueError):
        DataLoader(ds, batch_size=4, batch_sampler=[[0]])


def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    g = kiln.Generator().manual_seed(0)
    r = list(RandomSampler(range(8), generator=g))
    assert sorted(r) == list(range(8))
    rr = list(RandomSampler(range(5), replacement=True, num_samples=20, generator=g))
    assert len(rr) == 20 and all(0 <= i < 5 for i in rr)
    assert sorted(SubsetRandomSampler([3, 5, 7], generator=g)) == [3, 5, 7]
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    assert len(BatchSampler(range(7), 3, drop_last=True)) == 2
    with pytest.raises(ValueError):
        BatchSampler(range(3), 0, False)


def test_random_split_sizes_disjoint_and_reproducible():
    ds = _tds(10)
    a, b = random_split(ds, [7, 3], generator=kiln.Generator().manual_seed(1))
    assert (len(a), len(b)) == (7, 3)
    ia, ib = set(a.indices), set(b.indices)
    assert not ia & ib and ia | ib == set(range(10))
    a2, _ = random_split(ds, [7, 3], generator=kiln.Generator().manual_seed(1))
    assert a.indices == a2.indices
    parts = random_split(range(11), [0.5, 0.3, 0.2], generator=kiln.Generator().manual_seed(2))
    assert [len(p) for p in parts] == [6, 3, 2]  # floors 5, 3, 2, remainder round-robin
    assert sorted(i for p in parts for i in p) == list(range(11))
    with pytest.raises(ValueError):
        random_split(ds, [5, 4])
    x, y = a[0]
    assert int(y) == a.indices[0]


def test_subset_and_concat():
    ds = _tds(5)
    sub = Subset(ds, [4, 0])
    assert len(sub) == 2 and int(sub[0][1]) == 4
    cat = ConcatDataset([ds, sub])
    assert len(cat) == 7 and int(cat[5][1]) == 4 and int(cat[-1][1]) == 0
    assert len(ds + sub) == 7
    with pytest.raises(IndexError):
        cat[7]
    dl = DataLoader(cat, batch_size=4)
    assert [b[1].tolist() for b in dl] == [[0, 1, 2, 3], [4, 4, 0]]


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            yield kiln.tensor([float(i)]), i

    def __len__(self):
        return self.n


def test_iterable_dataset():
    dl = DataLoader(Stream(7), batch_size=3)
    batches = list(dl)
    assert [b[1].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6]] and len(dl) == 3
    assert len(list(DataLoader(Stream(7), batch_size=3, drop_last=True))) == 2
    with pytest.raises(ValueError):
        DataLoader(Stream(3), shuffle=True)


def test_fast_tensor_dataset_path_matches_generic_collate():
    ds = _tds(9)
    g1, g2 = kiln.Generator().manual_seed(5), kiln.Generator().manual_seed(5)
    fast = list(DataLoader(ds, batch_size=4, shuffle=True, generator=g1))
    slow = list(DataLoader(ds, batch_size=4, shuffle=True, generator=g2, collate_fn=lambda s: default_collate(s)))
    for f, s in zip(fast, slow):
        assert all(kiln.equal(a, b) for a, b in zip(f, s))


def test_tensor_dataset_batches_keep_autograd_for_tensors_that_require_grad():
    x = kiln.randn(6, 2, requires_grad=True)
    xb, yb = next(iter(DataLoader(TensorDataset(x, kiln.arange(6)), batch_size=4)))
    assert xb.requires_grad and not yb.requires_grad
    xb.sum().backward()
    assert x.grad.tolist() == [[1.0, 1.0]] * 4 + [[0.0, 0.0]] * 2


def test_weighted_random_sampler_distribution_and_errors():
    from kiln.utils.data import WeightedRandomSampler
    s = WeightedRandomSampler([1.0, 0.0, 3.0, 6.0], 20000, generator=kiln.Generator().manual_seed(0))
    freq = np.bincount(list(s), minlength=4) / 20000
    np.testing.assert_allclose(freq, [0.1, 0.0, 0.3, 0.6], atol=0.02)
    assert freq[1] == 0 and len(s) == 20000
    picks = list(WeightedRandomSampler(kiln.tensor([1.0, 0.0, 3.0, 6.0]), 3, replacement=False,
                                       generator=kiln.Generator().manual_seed(1)))
    assert sorted(picks) == [0, 2, 3]
    a = list(WeightedRandomSampler([1, 2, 3], 10, generator=kiln.Generator().manual_seed(5)))
    b = list(WeightedRandomSampler([1, 2, 3], 10, generator=kiln.Generator().manual_seed(5)))
    assert a == b
    with pytest.raises(ValueError):
        WeightedRandomSampler([-1.0, 2.0], 3)
    with pytest.raises(RuntimeError):
        WeightedRandomSampler([1.0, 0.0], 2, replacement=False)
    dl = DataLoader(_tds(4), batch_size=5, sampler=WeightedRandomSampler([0, 0, 1, 0], 5))
    assert next(iter(dl))[1].tolist() == [2] * 5
