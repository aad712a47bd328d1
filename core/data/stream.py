"""A deterministic, resumable, bounded-memory stream of training patches.

Each epoch, the source's index space is cut into contiguous blocks; the blocks are put in a
seeded random order and grouped into windows of a few blocks; each window is read (contiguous
reads only), and its selected patches are shuffled together. Memory is bounded by one window
(plus the one being prefetched). The whole order is a function of (seed, epoch), so the stream's
state is one integer: the number of samples consumed so far.

Under data parallelism each of `world_size` streams serves one rank: the global batch at position p
is positions p .. p + world_size * batch_size, and rank r takes the r-th slice of it. The ranks'
shares are disjoint, each keeps only its own patches of a window, and the position (counted over
the global batches) is the same number on every rank.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.data.sources import PatchSource


class PatchStream:
    """Yields (images uint8 (B,96,96,3), labels int64 (B,), dihedral codes (B,) or None)."""

    def __init__(
        self, source: PatchSource, indices: np.ndarray, batch_size: int, seed: int, augment: bool = True,
        position: int = 0, block_size: int = 512, window_blocks: int = 8, rank: int = 0, world_size: int = 1,
    ):
        self.source, self.indices = source, np.sort(np.asarray(indices))
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.block_size, self.window_blocks = block_size, window_blocks
        self.rank, self.world_size = rank, world_size
        self.position = position
        # selected indices of each block, in index order
        bounds = np.searchsorted(self.indices, np.arange(0, len(source) + block_size, block_size))
        self._block_members = [self.indices[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
        self._plan_epoch = -1
        self._window_key = None
        self._window: dict[int, np.ndarray] = {}
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._prefetch = None

    @property
    def epoch_size(self) -> int:
        return len(self.indices)

    def epoch_plan(self, epoch: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Windows (each a shuffled array of source indices) and the epoch's dihedral codes."""
        rng = np.random.default_rng([self.seed, epoch])
        order = [b for b in rng.permutation(len(self._block_members)) if len(self._block_members[b])]
        windows = []
        for i in range(0, len(order), self.window_blocks):
            blocks = sorted(order[i:i + self.window_blocks])
            members = np.concatenate([self._block_members[b] for b in blocks])
            windows.append(rng.permutation(members))
        codes = rng.integers(0, 8, size=self.epoch_size)
        return windows, codes

    def _plan(self, epoch: int):
        if self._plan_epoch != epoch:
            self._windows, self._codes = self.epoch_plan(epoch)
            self._starts = np.cumsum([0] + [len(w) for w in self._windows])
            self._plan_epoch = epoch
        return self._windows, self._codes, self._starts

    def _read_window(self, members: np.ndarray) -> dict[int, np.ndarray]:
        rows: dict[int, np.ndarray] = {}
        for block in np.unique(members // self.block_size):
            start = int(block) * self.block_size
            end = min(start + self.block_size, len(self.source))
            data = self.source.read(start, end)
            for i in members[(members >= start) & (members < end)]:
                rows[int(i)] = data[i - start]
        return rows

    def owner(self, positions: np.ndarray) -> np.ndarray:
        """The rank that takes each global stream position."""
        return positions % (self.batch_size * self.world_size) // self.batch_size

    def _members(self, epoch: int, w: int) -> np.ndarray:
        """The patches of window w of `epoch` that this rank takes."""
        windows = self.epoch_plan(epoch)[0] if epoch != self._plan_epoch else self._windows
        members = windows[w]
        if self.world_size == 1:
            return members
        start = epoch * self.epoch_size + sum(len(windows[i]) for i in range(w))
        return members[self.owner(start + np.arange(len(members))) == self.rank]

    def _load(self, epoch: int, w: int) -> None:
        if self._window_key == (epoch, w):
            return
        windows = self._plan(epoch)[0]
        if self._prefetch is not None and self._prefetch[0] == (epoch, w):
            self._window = self._prefetch[1].result()
        else:
            self._window = self._read_window(self._members(epoch, w))
        self._window_key = (epoch, w)
        next_key = (epoch, w + 1) if w + 1 < len(windows) else (epoch + 1, 0)
        self._prefetch = (next_key, self._pool.submit(self._read_window, self._members(*next_key)))

    def next_batch(self):
        images, labels, codes = [], [], []
        position = self.position + self.rank * self.batch_size
        while len(images) < self.batch_size:
            epoch, offset = divmod(position, self.epoch_size)
            windows, epoch_codes, starts = self._plan(epoch)
            w = int(np.searchsorted(starts, offset, side="right") - 1)
            self._load(epoch, w)
            take = min(self.batch_size - len(images), int(starts[w + 1]) - offset)
            for j in range(offset, offset + take):
                idx = int(windows[w][j - starts[w]])
                images.append(self._window[idx])
                labels.append(int(self.source.labels[idx]))
                codes.append(int(epoch_codes[j]))
            position += take
        self.position += self.batch_size * self.world_size
        return (
            np.stack(images),
            np.asarray(labels, dtype=np.int64),
            np.asarray(codes, dtype=np.int64) if self.augment else None,
        )

    def __iter__(self):
        while True:
            yield self.next_batch()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
