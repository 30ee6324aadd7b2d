"""Input checks for the public entry points: every bad argument gets a TypeError or ValueError naming it.

Each check runs before the caller changes anything, so a refused call leaves the memory as it was. Inputs the published
package accepts (Python lists, tuples and numpy arrays as indices, numpy scalars as sizes, broadcastable lifespan
deltas) are converted here into the tensors the algorithm expects.

Shapes (the legend of ``docs/algorithm.md``): B batch rows, L new engrams per row, M memory length, D hidden size, R
reminded. (Error messages name the published package's ``[BatchSize, Length, HiddenDim]``, which its users know.)
"""

import functools
import math
import numbers
import os
from typing import Any, List, NamedTuple, Optional, Tuple, Union

import torch

from .similarity import check_values

#: Largest engram id, count and memory length: they are stored as int32.
INT32_MAX = 2**31 - 1
#: Largest finite float32, the dtype of stored data and lifespans.
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
#: Deepest long-term search: every depth is one pass over the walks, and a walk ends after visiting every engram.
MAX_SEARCH_DEPTH = 2**20
#: Floating dtypes the memory takes data in (float8 types cannot be summed or compared by torch).
DATA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class IndexRangeError(IndexError, ValueError):
    """An index outside the memory. Both an ``IndexError`` (what the published package raises) and a ``ValueError``."""


def check_count(value: Any, name: str, maximum: int = INT32_MAX) -> int:
    """A non-negative integer (numpy integers too) up to ``maximum``, as a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative int, got {type(value).__name__} {value!r}")
    value = int(value)
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must lie in 0..{maximum}, got {value}")
    return value


def check_lifespan(value: Any, name: str = "initial_lifespan") -> Union[int, float]:
    """A real number (numpy scalars too) that float32 holds as a finite value, as a Python int or float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} must be finite and within float32's range, got {value!r}")
    return value


def check_device(device: Any, name: str = "device") -> torch.device:
    """A ``str`` or ``torch.device`` naming a device this machine has (not ``meta``, which holds no values)."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a str or torch.device, got {type(device).__name__} {device!r}")
    try:
        device = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"{name} {device!r} is not a device: {_first_line(error)}") from None
    if device.type == "meta":
        raise ValueError(f"{name} must not be 'meta': a meta tensor holds no values")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, AttributeError) as error:
        raise ValueError(f"{name} {str(device)!r} is not available on this machine: {_first_line(error)}") from None
    return device


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__


def _tensor_of(value: Any, name: str, what: str) -> torch.Tensor:
    """``value`` as a tensor: tensors as they are, lists, tuples and numpy arrays converted."""
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, (list, tuple)) or hasattr(value, "__array__"):
        try:
            tensor = torch.as_tensor(value)
        except (OverflowError, RuntimeError) as error:  # an int beyond int64
            raise ValueError(f"{name} holds a value no tensor can: {_first_line(error)}") from None
        except (TypeError, ValueError) as error:  # ragged lists, strings, objects, and (from torch) some overflows
            if "overflow" in str(error).lower():
                raise ValueError(f"{name} holds a value no tensor can: {_first_line(error)}") from None
            raise TypeError(f"{name} must be {what}: {_first_line(error)}") from None
        if tensor.numel() == 0 and tensor.dtype.is_floating_point:
            tensor = tensor.long()  # an empty list has no dtype of its own
    else:
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if tensor.layout != torch.strided:
        raise TypeError(f"{name} must be a dense tensor, got layout {tensor.layout}")
    if tensor.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it holds no values")
    return tensor


def as_indices(value: Any, name: str = "indices") -> torch.Tensor:
    """Integer indices from a tensor, list, tuple or numpy array, as an int64 tensor on their own device."""
    tensor = _tensor_of(value, name, "integer indices (a tensor, list, tuple or numpy array)")
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got dtype {tensor.dtype}")
    return tensor.long()


def check_index_range(indices: torch.Tensor, length: int, name: str = "indices", lowest: int = -1) -> None:
    """Every entry within ``lowest..length-1``; otherwise an ``IndexRangeError`` saying which values were given."""
    if indices.numel() == 0:
        return
    low, high = (int(v) for v in torch.stack(torch.aminmax(indices)).tolist())
    if low < lowest or high >= length:
        raise IndexRangeError(
            f"{name} must lie in {lowest}..{length - 1} (the memory length is {length}), got values from {low} to {high}"
        )


def as_lifespan_delta(
    value: Any, shape: torch.Size, name: str = "lifespan_delta", check_finite: bool = True
) -> torch.Tensor:
    """Lifespan deltas broadcast to ``shape`` [B, K]: a number, a 0-dim tensor, a [1, K] row or [B, K].

    Returns a float32 tensor; values that float32 cannot hold as finite numbers (NaN, infinity, beyond its range) are
    refused, since a stored infinity makes the memory's own checkpoint unloadable.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a real tensor, got bool")
    if isinstance(value, numbers.Real):
        try:
            tensor = torch.tensor(float(value))
        except OverflowError:
            raise ValueError(f"{name} {value!r} is beyond float32's range") from None
    else:
        tensor = _tensor_of(value, name, "a number or a real tensor (or list, tuple, numpy array)")
    if tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must be real-valued, got dtype {tensor.dtype}")
    if tensor.dtype.is_floating_point and tensor.dtype not in DATA_DTYPES:
        raise TypeError(f"{name} dtype {tensor.dtype} is not supported (use float16, bfloat16, float32 or float64)")
    try:
        broadcast = torch.broadcast_shapes(tensor.shape, shape)
    except RuntimeError:
        broadcast = None
    if broadcast != torch.Size(shape):
        raise ValueError(
            f"{name} must be a number or broadcast to the shape of indices {list(shape)}, got {list(tensor.shape)}"
        )
    delta = tensor.to(torch.float32)
    if check_finite and delta.numel() and not bool(torch.isfinite(delta).all()):
        raise_not_finite(name)
    return delta.expand(shape)


def raise_not_finite(name: str) -> None:
    raise ValueError(f"{name} must hold finite values within float32's range (NaN, infinity or overflow found)")


def check_data(data: Any, name: str = "data") -> None:
    """A dense [B, L, D] tensor of real numbers (integers are taken as floats)."""
    if not isinstance(data, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor shaped [BatchSize, Length, HiddenDim], got {type(data).__name__}"
        )
    if data.layout != torch.strided:
        raise TypeError(f"{name} must be a dense tensor, got layout {data.layout}")
    if data.dtype == torch.bool or data.dtype.is_complex:
        raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}")
    if data.is_floating_point() and data.dtype not in DATA_DTYPES:
        raise TypeError(f"{name} dtype {data.dtype} is not supported (use float16, bfloat16, float32 or float64)")
    if data.dim() != 3:
        raise ValueError(
            f"{name} must be shaped [BatchSize, Length, HiddenDim], got {data.dim()} dims {list(data.shape)}"
        )
    if data.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it holds no values")
    if data.size(0) == 0:
        raise ValueError(f"{name} has batch size 0: there is no batch row to remember for")
    if data.size(2) == 0:
        raise ValueError(f"{name} has hidden size 0: an engram needs at least one value")


def check_memory_length(batch_size: int, length: int, name: str = "data") -> None:
    """A memory of ``length`` engrams per row must fit int32 positions and a [B, M, M] count matrix."""
    # int32 counts: 4 * B * M * M bytes must be a size torch can compute
    if length > INT32_MAX or batch_size * length * length >= 2**61:
        raise ValueError(
            f"{name} would make the memory {length} engrams long per row ({batch_size} rows): its [B, M, M] "
            "co-firing counts cannot be held"
        )


def as_float32_data(data: torch.Tensor, device: torch.device, name: str = "data") -> torch.Tensor:
    """``data`` detached, as float32 on ``device``; refused when float32 cannot hold every value as a finite number, or
    a value is so large that squared distances could overflow (``memoria.similarity.largest_value``)."""
    stored = data.detach().to(device=device, dtype=torch.float32)
    if stored.numel():
        check_values(stored, name)
    return stored


def check_rows(rows: Any, batch_size: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """``reset_memory_rows``' argument as a bool mask [B]: a bool mask (tensor, list or numpy array) or row
    indices (tensor, list, tuple or numpy array)."""
    if isinstance(rows, bool) or isinstance(rows, numbers.Integral):
        rows = [rows]
    tensor = _tensor_of(rows, "rows", "a bool mask or row indices (a tensor, list, tuple or numpy array)")
    if tensor.dtype == torch.bool:
        if tuple(tensor.shape) != (batch_size,):
            raise ValueError(f"rows mask must be shaped [{batch_size}], got {list(tensor.shape)}")
        return tensor.to(device or "cpu")
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
        raise TypeError(f"rows must be a bool mask or integer row indices, got dtype {tensor.dtype}")
    index = tensor.long().flatten().cpu()
    check_index_range(index, batch_size, "rows", lowest=0)
    mask = torch.zeros(batch_size, dtype=torch.bool)
    mask[index] = True
    return mask.to(device or "cpu")


def all_finite(values: torch.Tensor) -> bool:
    """Whether every element of the floating tensor ``values`` is finite.

    NaN and infinity reach the sum, so a finite sum settles it in one reduction; only a sum that is not finite (a
    NaN or infinity, or an overflow of large finite values) needs the element-wise check.
    """
    total = values.sum()
    # x - x is 0 for a finite x and NaN for NaN or an infinity
    return bool(total - total == 0) or bool(torch.isfinite(values).all())


def check_data_fits(
    data: torch.Tensor,
    batch_size: Optional[int],
    hidden_dim: Optional[int],
    memory_length: int,
    next_engram_id: Optional[int],
) -> None:
    """``add_working_memory``'s ``data`` (already ``check_data``'d) against the memory it goes into: the batch size and
    hidden size the memory holds (None: not fixed yet), the length it reaches, and the ids it needs (None: untracked).
    """
    if batch_size is not None:
        if data.size(0) != batch_size:
            raise ValueError(
                f"data batch size {data.size(0)} differs from the memory's batch size {batch_size}; "
                "call reset_memory() before changing it"
            )
        if hidden_dim and data.size(2) != hidden_dim:
            raise ValueError(f"data hidden size {data.size(2)} differs from the memory's {hidden_dim}")
    check_memory_length(data.size(0), memory_length + data.size(1), "data")
    if next_engram_id is not None and next_engram_id + data.size(1) - 1 > INT32_MAX:
        raise ValueError(
            f"data holds {data.size(1)} new engrams, but engram ids stop at {INT32_MAX} "
            f"(the next id is {next_engram_id}): call reset_memory() first"
        )


def device_memory(device: torch.device) -> Optional[int]:
    """The most bytes ``device`` can hold: a CPU's memory and swap, a CUDA device's memory (``None``: not known)."""
    if device.type == "cpu":
        return _host_memory()
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    return None


@functools.lru_cache(maxsize=1)
def _host_memory() -> Optional[int]:
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo if ":" in line)
        return sum(int(fields[name].split()[0]) * 1024 for name in ("MemTotal", "SwapTotal") if name in fields)
    except (OSError, ValueError):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, OSError, ValueError):
            return None


def check_allocation(data: torch.Tensor, device: torch.device, memory_length: int, output_width: int) -> None:
    """What ``data`` [B, L, D] makes the memory allocate on ``device`` must fit its memory: the store's vectors and
    co-firing counts once it is ``memory_length + L`` long, and (``output_width``, with independent rows) every
    remind's [B, width, D] outputs. Otherwise the allocator would fail (or the machine swap) only later."""
    limit = device_memory(device)
    if limit is None:
        return
    batch_size, length, hidden = data.shape
    slots = memory_length + length + 1
    # float32 vectors and int32 counts of every slot: B * slots * (D + slots) values of 4 bytes
    needed = 4 * batch_size * slots * (hidden + slots)
    if needed > limit:
        raise ValueError(
            f"data would make the memory {slots - 1} engrams long per row ({batch_size} rows, hidden size {hidden}): "
            f"its vectors and co-firing counts need {needed / 2**30:.1f} GiB, more than {device} has "
            f"({limit / 2**30:.1f} GiB)"
        )
    # float32 memories and int64 indices
    outputs = batch_size * output_width * (4 * hidden + 8)
    if outputs > limit:
        raise ValueError(
            f"num_reminded_stm + num_final_ltms + 1 = {output_width}: with independent rows every remind returns "
            f"[{batch_size}, {output_width}, {hidden}] memories, {outputs / 2**30:.1f} GiB, more than {device} has "
            f"({limit / 2**30:.1f} GiB)"
        )


def working_data(
    data: Any,
    device: Optional[torch.device],
    fixed_shape: Optional[Tuple[int, int]],
    memory_length: int,
    next_engram_id: Optional[int],
    output_width: int,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """``add_working_memory``'s ``data`` checked against the memory it goes into, as float32 on the engrams' ``device``
    (``None``: the data's own).

    Args:
        fixed_shape: (B, D) the memory holds (``None``: not fixed yet); memory_length: M before the add;
        next_engram_id: the first new id (``None``: ids untracked); output_width: see ``check_allocation``;
        generator: the tie-break generator, which must draw where the engrams live.
    Returns:
        [B, L, D] float32 on the engrams' device: the one copy that can fail for size is made here, before anything
        changes.
    """
    check_data(data, "data")
    check_data_fits(data, *(fixed_shape or (None, None)), memory_length, next_engram_id)
    device = device or data.device
    check_allocation(data, device, memory_length, output_width)
    check_generator(generator, device=device)
    return as_float32_data(data, device)


class PendingChecks(NamedTuple):
    """The input checks of an adjust whose values are still on the device: the algorithm reads them in the same host
    read as the survivors' widths and calls ``confirm`` before it writes anything.

    Attributes:
        values: [3] int64 on the indices' device: the lowest and the highest index, the number of deltas that are not
            finite.
        length: the memory length the indices must fit.
    """

    values: torch.Tensor
    length: int

    def confirm(self, values: List[int]) -> None:
        """Raise where ``values`` (``self.values`` read back) show bad input."""
        low, high, not_finite = values
        if not_finite:
            raise_not_finite("lifespan_delta")
        if low < -1 or high >= self.length:
            raise IndexRangeError(
                f"indices must lie in -1..{self.length - 1} (the memory length is {self.length}), got values from "
                f"{low} to {high}"
            )


def adjust_inputs(
    indices: Any, lifespan_delta: Any, batch_size: int, devices: set, length: int
) -> Tuple[torch.Tensor, torch.Tensor, PendingChecks]:
    """``adjust_lifespan_and_memories``' inputs as int64 indices [B, R] and float32 deltas of their shape.

    Indices may be tensors, lists, tuples or numpy arrays; a delta may also be a number, a 0-dim tensor or a [1, R] row
    (as in the published package). Tensors must lie on one of ``devices`` (the memory's, the input's, the CPU).
    What is left to check (indices within -1..length-1, finite deltas) is returned unread, as ``PendingChecks``.
    """
    raw = {"indices": indices, "lifespan_delta": lifespan_delta}
    indices = as_indices(indices, "indices")
    if indices.dim() != 2 or indices.size(0) != batch_size:
        raise ValueError(f"indices must be shaped [{batch_size}, RemindedLength], got {list(indices.shape)}")
    lifespan_delta = as_lifespan_delta(lifespan_delta, indices.shape, "lifespan_delta", check_finite=False)
    for name, value in raw.items():
        if isinstance(value, torch.Tensor) and value.device not in devices:
            named = sorted(str(device) for device in devices if device is not None)
            raise ValueError(f"{name} is on {value.device}, expected one of the memory's devices {named}")
    if indices.numel():
        low, high = torch.aminmax(indices)
    else:
        low = high = torch.full((), -1, dtype=torch.long, device=indices.device)
    # how many deltas are not finite (x - x is NaN for NaN and the infinities, 0 for the rest)
    not_finite = (lifespan_delta - lifespan_delta != 0).sum().to(low.device)
    return indices, lifespan_delta, PendingChecks(torch.stack([low, high, not_finite]), length)


def check_generator(
    generator: Any, name: str = "generator", device: Optional[torch.device] = None
) -> Optional[torch.Generator]:
    """None or a ``torch.Generator`` (that draws on ``device``'s type, where given)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and device is not None and generator.device.type != device.type:
        raise ValueError(f"{name} draws on {generator.device}, but the engrams live on {device}")
    return generator
