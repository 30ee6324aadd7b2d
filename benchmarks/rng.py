"""The global random state (CPU, and CUDA on a GPU) that every implementation's step starts from, and device syncs."""

from typing import Tuple

import torch


def get_rng(device: torch.device) -> Tuple[torch.Tensor, ...]:
    states = (torch.get_rng_state(),)
    if device.type == "cuda":
        states += (torch.cuda.get_rng_state(device),)
    return states


def set_rng(states: Tuple[torch.Tensor, ...], device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states[1], device)


def rng_equal(a: Tuple[torch.Tensor, ...], b: Tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
