"""Samplers: which dataset indices to visit, and in which order and batches."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence, Sized

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler"]


class Sampler:
    """Base class: iterating yields dataset indices (or, for a batch sampler, lists of them)."""

    def __init__(self, data_source: Sized | None = None):
        pass

    def __iter__(self) -> Iterator:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Sized):
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


def _new_seed_generator(generator: Any):
    """A generator for one epoch: `generator` itself, or one seeded from the default generator."""
    from ...frontend.creation import Generator, randint
    if generator is not None:
        return generator
    seed = int(randint(0, 2 ** 62, (1,)).item())
    return Generator().manual_seed(seed)


class RandomSampler(Sampler):
    """A random permutation each epoch (`kiln.randperm`), or `num_samples` draws with replacement.

    With `generator` given, epochs continue that generator's stream, so a seeded
    generator gives a reproducible sequence of (different) epoch orders.
    """

    def __init__(self, data_source: Sized, replacement: bool = False, num_samples: int | None = None,
                 generator: Any = None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={replacement}")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        from ...frontend.creation import randint, randperm
        n = len(self.data_source)
        gen = _new_seed_generator(self.generator)
        if self.replacement:
            yield from randint(0, n, (self.num_samples,), generator=gen).tolist()
            return
        for _ in range(self.num_samples // n):
            yield from randperm(n, generator=gen).tolist()
        yield from randperm(n, generator=gen).tolist()[: self.num_samples % n]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each epoch."""

    def __init__(self, indices: Sequence[int], generator: Any = None):
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        from ...frontend.creation import randperm
        gen = _new_seed_generator(self.generator)
        for i in randperm(len(self.indices), generator=gen).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """`num_samples` indices drawn with probability proportional to `weights` (with or without replacement).

    Uses the generator's uniform stream: inverse-CDF draws with replacement, and
    Efraimidis-Spirakis keys `u ** (1 / w)` (largest first) without. The distribution is
    PyTorch's; the exact indices differ, since kiln's random stream is its own.
    """

    def __init__(self, weights: Sequence[float], num_samples: int, replacement: bool = True, generator: Any = None):
        import numpy as np
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={num_samples}")
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement should be a boolean value, but got replacement={replacement}")
        w = np.asarray(weights.tolist() if hasattr(weights, "tolist") else list(weights), dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be a non-empty 1-D sequence of non-negative, finite numbers with a "
                             "positive sum")
        if not replacement and num_samples > int(np.count_nonzero(w)):
            raise RuntimeError("cannot sample more indices than there are non-zero weights without replacement")
        self.weights = w
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        import numpy as np

        from ...frontend.creation import rand
        from ...ir import dtypes as dt
        gen = _new_seed_generator(self.generator)
        n = self.weights.size
        if self.replacement:
            u = rand(self.num_samples, generator=gen, dtype=dt.float64).numpy()
            cdf = np.cumsum(self.weights)
            idx = np.searchsorted(cdf, u * cdf[-1], side="right")
            yield from np.minimum(idx, n - 1).tolist()
            return
        u = rand(n, generator=gen, dtype=dt.float64).numpy()
        with np.errstate(divide="ignore"):
            keys = np.where(self.weights > 0, np.log(np.maximum(u, 1e-300)) / self.weights, -np.inf)
        yield from np.argsort(-keys, kind="stable")[: self.num_samples].tolist()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Group another sampler's indices into lists of `batch_size` (dropping a short last one if asked)."""

    def __init__(self, sampler: Iterable[int], batch_size: int, drop_last: bool):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size
