"""A small coordinate-list sparse tensor (the 1.1.0 ``memoria.sparse_tensor`` API).

The memory itself stores dense tensors; this class exists so that code written against the published package keeps
working. Entries are kept as ``indices`` [NumEntries, Rank] and ``values`` [NumEntries] in the order they were written:
indexing keeps that order, and assignment drops the overwritten entries and appends the new ones after the rest. Every
position without an entry holds ``default_value``.
"""

from itertools import product
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch

from .validation import IndexRangeError, check_index_range

Key = Union[int, slice, torch.Tensor, List[int], None]


class SparseTensor:
    """Entries ``values[n]`` at ``indices[n]`` of a tensor of ``shape``; every other position is ``default_value``.

    Attributes:
        indices: [NumEntries, Rank] positions (int64).
        values: [NumEntries] entry values.
        default_value: value of every position without an entry.
        shape: the dense shape, a tuple.
        device: where ``indices`` and ``values`` live.
    """

    def __init__(
        self,
        indices: torch.Tensor,
        values: torch.Tensor,
        default_value: Union[int, float] = 0,
        shape: Optional[Sequence[int]] = None,
        device: Optional[Union[str, torch.device]] = None,
    ) -> None:
        """
        Args:
            indices: [NumEntries, Rank] positions.
            values: [NumEntries] values.
            default_value: value of the positions without an entry.
            shape: dense shape; default: one past the largest index along every axis.
            device: where the entries live; default: ``values``' device.
        """
        if not isinstance(indices, torch.Tensor) or not isinstance(values, torch.Tensor):
            raise TypeError("SparseTensor indices and values must be torch.Tensors")
        if indices.dim() != 2 or values.dim() != 1 or indices.size(0) != values.size(0):
            raise ValueError(
                f"SparseTensor indices must be [NumEntries, Rank] and values [NumEntries], "
                f"got {list(indices.shape)} and {list(values.shape)}"
            )
        if shape is None:
            if indices.size(0) == 0:
                raise ValueError("SparseTensor without entries needs a shape")
            shape = (indices.max(dim=0).values + 1).tolist()
        self.shape: Tuple[int, ...] = tuple(int(size) for size in shape)
        if indices.size(1) != len(self.shape):
            raise ValueError(f"SparseTensor indices have rank {indices.size(1)}, the shape {list(self.shape)} not")
        self.device = torch.device(device) if device is not None else values.device
        self.indices = indices.to(device=self.device, dtype=torch.long)
        self.values = values.to(self.device)
        self.default_value = default_value

    # ------------------------------------------------------------------ construction and conversion

    @classmethod
    def empty(
        cls,
        size: Iterable[int],
        default_value: Union[int, float] = 0,
        dtype: Optional[torch.dtype] = torch.int32,
        device: Optional[Union[str, torch.device]] = None,
    ) -> "SparseTensor":
        """A sparse tensor of ``size`` without entries."""
        size = tuple(size)
        indices = torch.empty(0, len(size), dtype=torch.long, device=device)
        return cls(indices, torch.empty(0, dtype=dtype, device=device), default_value, size)

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor, default_value: Union[int, float] = 0) -> "SparseTensor":
        """Entries at every position of the dense ``tensor`` that differs from ``default_value``, in row-major order."""
        indices = (tensor != default_value).nonzero()  # [NumEntries, Rank], row-major
        return cls(indices, tensor[tuple(indices.t())], default_value, tensor.shape)

    def to_dense(self) -> torch.Tensor:
        """The dense tensor (later entries win where two share a position)."""
        dense = torch.full(self.shape, self.default_value, dtype=self.values.dtype, device=self.device)
        dense[tuple(self.indices.t())] = self.values
        return dense

    def to(self, device: Union[str, torch.device]) -> "SparseTensor":
        return SparseTensor(self.indices.to(device), self.values.to(device), self.default_value, self.shape)

    def clone(self) -> "SparseTensor":
        return SparseTensor(self.indices.clone(), self.values.clone(), self.default_value, self.shape)

    def type(self, dtype: torch.dtype) -> "SparseTensor":
        return SparseTensor(self.indices, self.values.to(dtype), self.default_value, self.shape)

    def tolist(self) -> list:
        return self.to_dense().tolist()

    def dim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return (
            f"SparseTensor(shape={self.shape}, default_value={self.default_value}, "
            f"indices={self.indices}, values={self.values})"
        )

    # ------------------------------------------------------------------ indexing

    def _keys(self, raw: Union[Key, tuple]) -> List[Key]:
        """One key per axis: ``None`` for a whole axis, ``int``, a bounded ``slice``, or an int64 tensor."""
        raw = raw if isinstance(raw, tuple) else (raw,)
        if len(raw) > self.dim():
            raise IndexRangeError(f"too many indices ({len(raw)}) for a SparseTensor of rank {self.dim()}")
        keys: List[Key] = []
        for axis, key in enumerate(raw + (None,) * (self.dim() - len(raw))):
            size = self.shape[axis]
            if key is None:
                keys.append(None)
            elif isinstance(key, bool):
                raise TypeError(f"SparseTensor index for axis {axis} must not be a bool")
            elif isinstance(key, int):
                if not -size <= key < size:
                    raise IndexRangeError(f"index {key} is out of range for axis {axis} of size {size}")
                keys.append(key % size)
            elif isinstance(key, slice):
                keys.append(None if key == slice(None) else slice(*key.indices(size)))
            elif isinstance(key, (torch.Tensor, list)):
                tensor = torch.as_tensor(key, device=self.device)
                if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
                    raise TypeError(f"SparseTensor index for axis {axis} must hold integers, got {tensor.dtype}")
                check_index_range(tensor, size, f"index for axis {axis}", lowest=-size)
                keys.append(tensor.long() % max(size, 1))
            else:
                raise TypeError(f"unsupported SparseTensor index type {type(key).__name__}")
        return keys

    def __getitem__(self, raw: Union[Key, tuple]) -> Union["SparseTensor", torch.Tensor]:
        """Integers drop their axis, slices keep it, integer tensors are broadcast together and placed where the first
        of them stands (a scalar result is a tensor)."""
        keys = self._keys(raw)
        indices, values, shape = self.indices, self.values, list(self.shape)
        # integer keys select and drop their axis
        for axis in reversed(range(len(keys))):
            if isinstance(keys[axis], int) and not isinstance(keys[axis], bool):
                chosen = indices[:, axis] == keys[axis]
                indices = torch.cat([indices[chosen, :axis], indices[chosen, axis + 1 :]], dim=1)
                values = values[chosen]
                del keys[axis], shape[axis]
        # slices select and renumber
        for axis, key in enumerate(keys):
            if isinstance(key, slice):
                positions = torch.arange(key.start, key.stop, key.step, device=self.device)
                chosen = torch.isin(indices[:, axis], positions)
                indices, values = indices[chosen].clone(), values[chosen]
                indices[:, axis] = (indices[:, axis] - key.start) // key.step
                keys[axis], shape[axis] = None, positions.numel()
        if not shape:
            if values.numel():
                return values
            return torch.tensor(self.default_value, dtype=self.values.dtype, device=self.device)
        tensor_axes = [axis for axis, key in enumerate(keys) if isinstance(key, torch.Tensor)]
        if not tensor_axes:
            return SparseTensor(indices, values, self.default_value, shape)

        broadcast = torch.broadcast_tensors(*[keys[axis] for axis in tensor_axes])
        key_shape = tuple(broadcast[0].shape)
        first = tensor_axes[0]
        other_axes = [axis for axis in range(len(keys)) if axis not in tensor_axes]
        new_indices, new_values = [], []
        # key positions in row-major order; the entries matching each keep their stored order
        for position in product(*[range(size) for size in key_shape]):
            chosen = torch.ones(indices.size(0), dtype=torch.bool, device=self.device)
            for axis, key in zip(tensor_axes, broadcast):
                chosen &= indices[:, axis] == key[position]
            picked = indices[chosen]
            where = torch.tensor(position, dtype=torch.long, device=self.device).expand(picked.size(0), -1)
            before = [picked[:, axis : axis + 1] for axis in other_axes if axis < first]
            after = [picked[:, axis : axis + 1] for axis in other_axes if axis > first]
            new_indices.append(torch.cat(before + [where] + after, dim=1))
            new_values.append(values[chosen])
        new_shape = [shape[axis] for axis in other_axes if axis < first]
        new_shape += list(key_shape) + [shape[axis] for axis in other_axes if axis > first]
        if not new_indices:
            return SparseTensor.empty(new_shape, self.default_value, self.values.dtype, self.device)
        return SparseTensor(torch.cat(new_indices), torch.cat(new_values), self.default_value, new_shape)

    def __setitem__(self, raw: Union[Key, tuple], value: Union[int, float, torch.Tensor, "SparseTensor"]) -> None:
        """Drop the entries at the addressed positions, then append one entry per position (in row-major key order),
        unless ``value`` is the default value."""
        keys = self._keys(raw)
        tensor_axes = [axis for axis, key in enumerate(keys) if isinstance(key, torch.Tensor)]
        broadcast = torch.broadcast_tensors(*[keys[axis] for axis in tensor_axes]) if tensor_axes else ()
        key_shape = tuple(broadcast[0].shape) if tensor_axes else ()
        # per axis the addressed positions; the tensor axes together as one list of tuples
        ranges: List[list] = []
        for axis, key in enumerate(keys):
            if key is None:
                ranges.append(list(range(self.shape[axis])))
            elif isinstance(key, int):
                ranges.append([key])
            elif isinstance(key, slice):
                ranges.append(list(range(key.start, key.stop, key.step)))
            else:
                ranges.append([])
        tuples = torch.stack([key.flatten() for key in broadcast], dim=1) if tensor_axes else None

        chosen = torch.ones(self.indices.size(0), dtype=torch.bool, device=self.device)
        for axis, positions in enumerate(ranges):
            if axis not in tensor_axes:
                allowed = torch.tensor(positions, dtype=torch.long, device=self.device)
                chosen &= torch.isin(self.indices[:, axis], allowed)
        if tensor_axes:
            stored = self.indices[:, tensor_axes]  # [NumEntries, NumTensorAxes]
            chosen &= (stored.unsqueeze(1) == tuples.unsqueeze(0)).all(dim=2).any(dim=1)
        self.indices, self.values = self.indices[~chosen], self.values[~chosen]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == self.default_value:
            return

        first = tensor_axes[0] if tensor_axes else None
        factors = [ranges[axis] for axis in range(len(keys)) if axis not in tensor_axes]
        if tensor_axes:
            factors.insert(first, tuples.tolist())
        positions = []
        for combination in product(*factors):
            combination = list(combination)
            if tensor_axes:
                for axis, index in zip(tensor_axes, combination.pop(first)):
                    combination.insert(axis, index)
            positions.append(combination)
        new_indices = torch.tensor(positions, dtype=torch.long, device=self.device).view(len(positions), self.dim())

        if isinstance(value, SparseTensor):
            value = value.to_dense()
        value = torch.as_tensor(value, device=self.device)
        if value.numel() == 1:
            new_values = value.reshape(()).to(self.values.dtype).expand(len(positions))
        else:
            grid = [len(ranges[axis]) for axis in range(len(keys)) if axis not in tensor_axes]
            if tensor_axes:
                grid[first:first] = list(key_shape)
            new_values = value.to(self.values.dtype).expand(grid).flatten()
        self.indices = torch.cat([self.indices, new_indices])
        self.values = torch.cat([self.values, new_values])

    # ------------------------------------------------------------------ arithmetic and shape

    def __add__(self, other: Union[int, float, "SparseTensor"]) -> "SparseTensor":
        """A number is added everywhere (the result is rebuilt from dense); a SparseTensor of the same shape and
        default adds up entry by entry, its new positions appended after ours."""
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return SparseTensor.from_tensor(self.to_dense() + other, self.default_value)
        if not isinstance(other, SparseTensor):
            raise TypeError(f"can only add a number or a SparseTensor to a SparseTensor, got {type(other).__name__}")
        if self.default_value != other.default_value:
            raise ValueError("SparseTensors with different default values cannot be added")
        if self.shape != other.shape:
            raise ValueError(f"SparseTensor shapes differ: {list(self.shape)} and {list(other.shape)}")
        same = (self.indices.unsqueeze(1) == other.indices.to(self.device).unsqueeze(0)).all(dim=2)  # [Ours, Theirs]
        added = self.clone()
        mine, theirs = same.nonzero(as_tuple=True)
        added.values = added.values.index_add(0, mine, other.values.to(self.device)[theirs].to(added.values.dtype))
        fresh = ~same.any(dim=0)
        added.indices = torch.cat([added.indices, other.indices.to(self.device)[fresh]])
        added.values = torch.cat([added.values, other.values.to(self.device)[fresh].to(added.values.dtype)])
        return added

    def unsqueeze(self, dim: int = -1) -> "SparseTensor":
        """A new axis of size 1 at ``dim`` (negative counts from the end of the current axes)."""
        if dim < 0:
            dim += self.dim()
        zeros = torch.zeros(self.indices.size(0), 1, dtype=torch.long, device=self.device)
        indices = torch.cat([self.indices[:, :dim], zeros, self.indices[:, dim:]], dim=1)
        return SparseTensor(indices, self.values, self.default_value, self.shape[:dim] + (1,) + self.shape[dim:])

    def diagonal(self, dim1: int = 0, dim2: int = 1) -> "SparseTensor":
        """Entries whose positions agree on both axes; the smaller axis is dropped, the larger one holds the
        diagonal (as in the published package, not moved to the end as ``torch.diagonal`` does)."""
        dim1, dim2 = sorted((dim1 % self.dim(), dim2 % self.dim()))
        chosen = self.indices[:, dim1] == self.indices[:, dim2]
        kept_axes = [axis for axis in range(self.dim()) if axis != dim1]
        return SparseTensor(
            self.indices[chosen][:, kept_axes],
            self.values[chosen],
            self.default_value,
            self.shape[:dim1] + self.shape[dim1 + 1 :],
        )

    def __eq__(self, other: object) -> bool:
        """Same shape, default value and entries in the same order (a dense tensor is converted first)."""
        if isinstance(other, torch.Tensor):
            other = SparseTensor.from_tensor(other, self.default_value)
        if not isinstance(other, SparseTensor):
            return False
        return (
            self.shape == other.shape
            and self.default_value == other.default_value
            and torch.equal(self.indices, other.indices.to(self.device))
            and torch.equal(self.values, other.values.to(self.device))
        )

    __hash__ = None
