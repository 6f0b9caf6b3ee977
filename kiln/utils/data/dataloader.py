"""DataLoader: iterate a dataset in (optionally shuffled) batches, collated into tensors."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ...frontend.tensor import Tensor
from .collate import default_collate, default_convert
from .dataset import Dataset, IterableDataset, TensorDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader"]


def _take_rows(t: Tensor, indices: list[int]) -> Tensor:
    """t[indices] along dim 0: numpy's take for plain eager data, kiln's index_select otherwise (autograd)."""
    if not t.requires_grad and not t.is_tracer:
        return Tensor._make(np.take(t._cell.value, np.asarray(indices, dtype=np.int64), axis=0))
    from ...frontend.creation import tensor
    from ...frontend.ops import index_select
    return index_select(t, 0, tensor(indices))


class DataLoader:
    """PyTorch's DataLoader for in-process loading.

    `batch_size`, `shuffle` (with `generator=kiln.Generator().manual_seed(s)` for a
    reproducible order, or the default generator), `drop_last`, `sampler`,
    `batch_sampler`, `collate_fn`, `len()`. `num_workers` and the other worker /
    pinning options are accepted for compatibility; loading always runs in the
    calling process.
    """

    def __init__(self, dataset: Dataset | Iterable, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | Iterable | None = None, batch_sampler: Sampler | Iterable | None = None,
                 num_workers: int = 0, collate_fn: Callable[[list], Any] | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Callable | None = None,
                 multiprocessing_context: Any = None, generator: Any = None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, pin_memory_device: str = "", in_order: bool = True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset) or (
            not hasattr(dataset, "__getitem__") and hasattr(dataset, "__iter__"))
        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified sampler option")
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified batch_sampler option")
        else:
            if sampler is not None and shuffle:
                raise ValueError("sampler option is mutually exclusive with shuffle")
            if batch_sampler is not None:
                if batch_size != 1 or shuffle or sampler is not None or drop_last:
                    raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                     "and drop_last")
                batch_size = None
                drop_last = False
            elif batch_size is None and drop_last:
                raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with "
                                 "drop_last")
            if sampler is None:
                sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
            if batch_size is not None and batch_sampler is None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        if collate_fn is None:
            collate_fn = default_collate if batch_size is not None or batch_sampler is not None else default_convert
        self.collate_fn = collate_fn

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    def __iter__(self) -> Iterator[Any]:
        if self._iterable:
            yield from self._iter_iterable()
            return
        if not self._auto_collation:
            for idx in self.sampler:
                yield self.collate_fn(self.dataset[idx])
            return
        for indices in self.batch_sampler:
            yield self._fetch(list(indices))

    def _fetch(self, indices: list[int]) -> Any:
        ds = self.dataset
        if type(ds) is TensorDataset and self.collate_fn is default_collate:
            # One gather per tensor instead of len(indices) indexings and a stack (same result).
            return [_take_rows(t, indices) for t in ds.tensors]
        if hasattr(ds, "__getitems__"):
            samples = ds.__getitems__(indices)
        else:
            samples = [ds[i] for i in indices]
        return self.collate_fn(samples)

    def _iter_iterable(self) -> Iterator[Any]:
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch: list = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # raises TypeError if the iterable has no length, as in PyTorch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self._auto_collation:
            return len(self.batch_sampler)
        return len(self.sampler)
