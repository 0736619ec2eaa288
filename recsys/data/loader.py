"""Vectorized Parquet -> :class:`recsys.types.Batch` loader.

Row groups are read with pyarrow into numpy arrays (zero-copy where possible); each batch
column is one numpy copy of a slice, turned into a tensor, with no Python work per row.
One epoch is a deterministic *stream* of rows:

* without shuffling, the row groups of ``files`` in order;
* with shuffling, the row groups in an order permuted by ``(seed, epoch)``, grouped into
  buffers of ``shuffle_buffer`` row groups whose rows are permuted by ``(seed, epoch, buffer)``.

Batch ``k`` is rows ``[k * B, (k + 1) * B)`` of the stream (batches cross row-group and buffer
boundaries), so ``iter_from(k)`` can start at any batch by loading only the buffer that holds
row ``k * B`` and yields exactly what an uninterrupted epoch yields from batch ``k`` on.

With ``world_size > 1`` each rank of a data-parallel run gets its own contiguous part of the
epoch's stream (rank ``r`` of ``W``: rows ``[r * N // W, ...)``, the first ``N % W`` ranks one
row more), so it reads only the row groups of its part (plus at most the two it shares with its
neighbours). Every rank yields the same number of batches, ``ceil((N // W) / B)``: a rank with
one row more puts it into its last batch. No row is read twice or left out of an epoch
(``drop_last`` drops each rank's tail).

A producer thread fills a queue ``prefetch`` batches ahead (``prefetch=0``: synchronous). An
exception in the thread is re-raised in the consumer; stopping early (``break``, ``close()``
or dropping the iterator) stops and joins the thread.

Example::

    loader = ParquetBatchLoader(files, spec, 2048, shuffle=True, seed=1)
    for epoch in range(3):
        loader.set_epoch(epoch)
        for batch in loader:  # batch.dense: B x D, batch.labels: B x T
            ...
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys.types import Batch, DataError, FeatureSpec

_LENGTH_DTYPE = np.int32  # torchrec's usual lengths dtype (e.g. its Criteo pipeline)


@dataclass
class _Columns:
    """Rows of the prepared columns as 1-D numpy arrays (a row group, a buffer or a slice).

    ``flat`` maps each fixed-width column (labels, dense, single-valued ids, extras) to an
    ``n`` array (often a zero-copy view of Arrow memory); ``multi`` maps each multi-hot column
    to ``(offsets, values)`` with ``n + 1`` offsets pointing into ``values`` (not necessarily
    starting at 0).
    """

    n: int
    flat: dict[str, np.ndarray]
    multi: dict[str, tuple[np.ndarray, np.ndarray]]

    def select(self, rows: slice) -> tuple[int, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Row count of ``rows`` and, per multi-hot column, its ``(values, lengths)``."""
        multi = {}
        for k, (off, vals) in self.multi.items():
            bounds = off[rows.start : rows.stop + 1]
            multi[k] = (vals[bounds[0] : bounds[-1]], np.diff(bounds))
        return rows.stop - rows.start, multi

    def take(self, idx: np.ndarray) -> _Columns:
        """The rows ``idx`` (a permutation), gathered column by column (cache-friendly)."""
        multi = {}
        for k, (off, vals) in self.multi.items():
            starts = off[:-1][idx]
            lengths = off[1:][idx] - starts
            new_off = np.zeros(len(idx) + 1, dtype=np.int64)
            np.cumsum(lengths, out=new_off[1:])
            gather = np.repeat(starts - new_off[:-1], lengths) + np.arange(new_off[-1])
            multi[k] = (new_off, vals[gather])
        return _Columns(len(idx), {k: np.take(v, idx) for k, v in self.flat.items()}, multi)

    @staticmethod
    def concat(parts: Sequence[_Columns]) -> _Columns:
        if len(parts) == 1:
            return parts[0]
        multi = {}
        for k in parts[0].multi:
            pieces = [p.multi[k] for p in parts]
            lengths = np.concatenate([np.diff(off) for off, _ in pieces])
            off = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=off[1:])
            multi[k] = (off, np.concatenate([v[o[0] : o[-1]] for o, v in pieces]))
        flat = {k: np.concatenate([p.flat[k] for p in parts]) for k in parts[0].flat}
        return _Columns(sum(p.n for p in parts), flat, multi)


@dataclass(frozen=True)
class _Unit:
    """One row group of one file."""

    file: int
    row_group: int
    rows: int


class _End:
    pass


@dataclass
class _Failure:
    error: BaseException


class ParquetBatchLoader:
    """Yields :class:`Batch` objects from prepared Parquet files.

    Each batch has ``dense`` B x D float32, ``sparse`` a ``KeyedJaggedTensor`` with keys in
    ``spec`` order (values int64; lengths int32, ``F * B`` of them: 1 per row for
    single-valued features, the list length, possibly 0, for multi-hot ones), ``labels``
    B x T float32 and ``extras`` ``{name: B-tensor}`` for the requested extra columns (aux,
    timestamp or ``_row``; numeric). The last batch has fewer rows unless ``drop_last``.

    Every batch owns fresh memory (each column is copied once from the row-group buffers).

    Args:
        files: prepared Parquet files (the columns of ``spec``).
        spec: the feature spec of the prepared data set.
        batch_size: rows per batch ``B``.
        shuffle: permute row groups and rows within buffers, seeded by ``(seed, epoch)``.
        seed: non-negative shuffle seed.
        drop_last: drop the final partial batch.
        prefetch: batches prepared ahead by a background thread (0: synchronous).
        extras: extra numeric columns to return in ``Batch.extras``.
        shuffle_buffer: row groups per shuffle buffer.
        rank: this process's part of the stream, ``0 <= rank < world_size``.
        world_size: the number of parts (data-parallel processes) the stream is split into.
    """

    def __init__(
        self,
        files: Sequence[Path | str],
        spec: FeatureSpec,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        prefetch: int = 2,
        extras: Sequence[str] = (),
        shuffle_buffer: int = 4,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if prefetch < 0 or shuffle_buffer < 1:
            raise ValueError("prefetch must be >= 0 and shuffle_buffer >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
        self.files = [Path(f) for f in files]
        self.spec = spec
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.prefetch = prefetch
        self.extras = tuple(extras)
        self.shuffle_buffer = shuffle_buffer
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

        self._keys = spec.sparse_names
        self._single = [f.name for f in spec.sparse if not f.multi_hot]
        self._multi = [f.name for f in spec.sparse if f.multi_hot]
        self._multi_set = set(self._multi)
        self._columns = [*spec.labels, *spec.dense, *self._keys, *self.extras]
        self._units: list[_Unit] = []
        for i, path in enumerate(self.files):
            pf = pq.ParquetFile(path)
            meta = pf.metadata
            names = set(pf.schema_arrow.names)
            for col in self._columns:
                if col not in names:
                    raise DataError("column missing from prepared file", path=str(path), field=col)
            for rg in range(meta.num_row_groups):
                rows = meta.row_group(rg).num_rows
                if rows:
                    self._units.append(_Unit(i, rg, rows))
        #: rows of all files; ``num_rows``: rows of this rank's part of an epoch
        self.total_rows = sum(u.rows for u in self._units)
        base, extra = divmod(self.total_rows, world_size)
        self._first_row = rank * base + min(rank, extra)
        self.num_rows = base + (1 if rank < extra else 0)
        self._min_rows = base
        if world_size > 1 and base == 0:
            raise DataError(
                f"{self.total_rows} rows cannot be split over {world_size} workers "
                "(every worker needs at least one row)",
                path=str(self.files[0]) if self.files else None,
            )

    def __len__(self) -> int:
        """Number of batches per epoch (the same on every rank)."""
        if self.drop_last:
            return self._min_rows // self.batch_size
        return -(-self._min_rows // self.batch_size)

    def _batch_rows(self, k: int) -> int:
        """Rows of batch ``k``: ``B``, except the last one, which takes the rank's rest."""
        if self.drop_last or k < len(self) - 1:
            return self.batch_size
        return self.num_rows - k * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Selects the shuffle order of the following iterations."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_from(0)

    def iter_from(self, batch_index: int) -> Iterator[Batch]:
        """Iterates the current epoch from batch ``batch_index`` (0-based) on."""
        if batch_index < 0:
            raise ValueError(f"batch_index must be >= 0, got {batch_index}")
        produce = self._produce(batch_index)
        if self.prefetch == 0:
            return produce
        return _prefetched(produce, self.prefetch)

    # ------------------------------------------------------------------ plan
    def _buffers(self) -> list[list[_Unit]]:
        """The epoch's row groups grouped into buffers, in stream order."""
        if not self.shuffle:
            return [[u] for u in self._units]
        rng = np.random.default_rng([self.seed, self.epoch, 0])
        order = rng.permutation(len(self._units))
        units = [self._units[i] for i in order]
        step = self.shuffle_buffer
        return [units[i : i + step] for i in range(0, len(units), step)]

    def _stream(self, start_row: int) -> Iterator[tuple[_Columns, int, int]]:
        """The epoch's buffers holding this rank's rows ``start_row`` on, as
        ``(columns, first, stop)``: rows ``[first, stop)`` of the buffer are the rank's and
        not yet yielded.

        Shuffled buffers are already permuted; the rank's part starts at stream row
        ``_first_row``.
        """
        start = self._first_row + start_row
        end = self._first_row + self.num_rows
        begin = 0
        for b, units in enumerate(self._buffers()):
            if begin >= end:
                return
            rows = sum(u.rows for u in units)
            if begin + rows <= start:
                begin += rows
                continue
            cols = _Columns.concat([self._read(u) for u in units])
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.epoch, 1, b])
                cols = cols.take(rng.permutation(cols.n))
            yield cols, max(0, start - begin), min(rows, end - begin)
            begin += rows

    def _produce(self, start_batch: int) -> Iterator[Batch]:
        k = start_batch
        if k >= len(self):
            return
        want = self._batch_rows(k)
        pending: list[tuple[_Columns, slice]] = []
        pending_rows = 0
        for cols, off, stop in self._stream(start_batch * self.batch_size):
            while off < stop:
                take = min(want - pending_rows, stop - off)
                pending.append((cols, slice(off, off + take)))
                pending_rows += take
                off += take
                if pending_rows == want:
                    yield self._batch(pending, want)
                    pending, pending_rows = [], 0
                    k += 1
                    if k == len(self):
                        return
                    want = self._batch_rows(k)
        if pending_rows and not self.drop_last:
            yield self._batch(pending, pending_rows)

    # ------------------------------------------------------------------ I/O
    def _read(self, unit: _Unit) -> _Columns:
        path = self.files[unit.file]
        table = pq.ParquetFile(path).read_row_group(unit.row_group, columns=self._columns)
        spec = self.spec
        flat: dict[str, np.ndarray] = {}
        for c in (*spec.labels, *spec.dense):
            flat[c] = _numeric(table, c, path).astype(np.float32, copy=False)
        for c in self._single:
            flat[c] = _numeric(table, c, path).astype(np.int64, copy=False)
        for c in self.extras:
            flat[c] = _numeric(table, c, path)
        multi = {}
        for c in self._multi:
            arr = table.column(c).combine_chunks()
            if arr.null_count:
                raise DataError("null list in a prepared multi-hot column", path=str(path), field=c)
            offsets = arr.offsets.to_numpy().astype(np.int64, copy=False)
            values = arr.values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            multi[c] = (offsets, values)
        return _Columns(table.num_rows, flat, multi)

    def _batch(self, pieces: list[tuple[_Columns, slice]], b: int) -> Batch:
        """Tensors of one batch of ``b`` rows gathered from ``pieces``, each column copied once.

        dense B x D float32, labels B x T float32, KJT values int64 and F * B int32 lengths.
        """
        selected = [cols.select(sel) for cols, sel in pieces]
        multi_total = sum(len(m[k][0]) for _, m in selected for k in self._multi)
        values = np.empty(len(self._single) * b + multi_total, dtype=np.int64)
        lengths = np.ones(len(self._keys) * b, dtype=_LENGTH_DTYPE)
        pos = 0
        for i, key in enumerate(self._keys):
            if key in self._multi_set:
                row = i * b
                for n, m in selected:
                    vals, lens = m[key]
                    values[pos : pos + len(vals)] = vals
                    lengths[row : row + n] = lens
                    pos += len(vals)
                    row += n
            else:
                _gather(pieces, key, values[pos : pos + b])
                pos += b
        sparse = KeyedJaggedTensor(
            keys=self._keys,
            values=torch.from_numpy(values),
            lengths=torch.from_numpy(lengths),
            stride=b,
        )
        dense = np.empty((b, len(self.spec.dense)), dtype=np.float32)
        for j, c in enumerate(self.spec.dense):
            _gather(pieces, c, dense[:, j])
        labels = np.empty((b, len(self.spec.labels)), dtype=np.float32)
        for j, c in enumerate(self.spec.labels):
            _gather(pieces, c, labels[:, j])
        extras = {}
        for c in self.extras:
            extras[c] = np.empty(b, dtype=pieces[0][0].flat[c].dtype)
            _gather(pieces, c, extras[c])
        return Batch(
            dense=torch.from_numpy(dense),
            sparse=sparse,
            labels=torch.from_numpy(labels),
            extras={k: torch.from_numpy(v) for k, v in extras.items()},
        )


def _gather(pieces: list[tuple[_Columns, slice]], column: str, out: np.ndarray) -> None:
    """Copies the selected rows of ``column`` from each piece into ``out`` (1-D, may be strided)."""
    pos = 0
    for cols, rows in pieces:
        n = rows.stop - rows.start
        out[pos : pos + n] = cols.flat[column][rows]
        pos += n


def _numeric(table: pa.Table, column: str, path: Path) -> np.ndarray:
    """One numeric column as numpy; nulls are an error naming the file and column."""
    col = table.column(column)
    if col.null_count:
        raise DataError("null values in a prepared column", path=str(path), field=column)
    if pa.types.is_boolean(col.type):
        return col.to_numpy()
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DataError(f"column is not numeric ({col.type})", path=str(path), field=column)
    if col.num_chunks == 1:
        return col.chunk(0).to_numpy()  # zero-copy
    return col.to_numpy()


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Puts unless ``stop`` is set; returns whether the item was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _prefetched(produce: Iterator[Batch], depth: int) -> Iterator[Batch]:
    """Runs ``produce`` in a thread, ``depth`` items ahead; joins the thread when done."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in produce:
                if not _put(q, item, stop):
                    return
            _put(q, _End(), stop)
        except BaseException as exc:  # re-raised in the consumer
            _put(q, _Failure(exc), stop)
        finally:
            produce.close()  # type: ignore[attr-defined]

    thread = threading.Thread(target=work, name="recsys-loader-prefetch", daemon=True)
    started = False
    try:
        thread.start()
        started = True
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise RuntimeError("loader thread ended without a result") from None
                continue
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while started and thread.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            thread.join(timeout=0.05)
