"""The benchmark's workload: its configurations and the stream of inputs fed to every implementation.

Each configuration is a ``Memoria`` set-up and a stream of ``add_working_memory -> remind ->
adjust_lifespan_and_memories`` steps: working memories ``[B, W, D]`` drawn from a private generator (so that the global
RNG only feeds the implementations) and the lifespan delta a model would pass for what was reminded.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch

# Squared distances between data rows average 2 * D * scale^2 = 16: far from exp() underflow (SPEC §7).
DATA_SQUARED_NORM = 8.0
LIFESPAN_EXTEND_SCALE = 8.0


@dataclass(frozen=True)
class BenchConfig:
    """One Memoria configuration and the stream fed to it."""

    name: str
    batch_size: int
    hidden_dim: int
    num_working: int  # working memories added per step
    stm_capacity: int
    num_reminded_stm: int
    num_final_ltms: int
    ltm_search_depth: int = 10
    initial_lifespan: int = 9

    def memoria_kwargs(self) -> Dict[str, int]:
        return dict(
            num_reminded_stm=self.num_reminded_stm,
            stm_capacity=self.stm_capacity,
            ltm_search_depth=self.ltm_search_depth,
            initial_lifespan=self.initial_lifespan,
            num_final_ltms=self.num_final_ltms,
        )

    def auto_warmup(self) -> int:
        """Steps until the short-term store has filled and long-term conversion has run for a while."""
        return math.ceil(self.stm_capacity / self.num_working) + 20


CONFIGS = {
    "gpt2": BenchConfig("gpt2", 8, 768, 50, 400, 50, 50, 10, 9),
    "enwik8": BenchConfig("enwik8", 8, 512, 128, 1536, 192, 192, 10, 9),
    "sort": BenchConfig("sort", 8, 512, 128, 512, 256, 640, 10, 5),
    # Small enough for the smoke test: every stage (STM overflow, LTM search) is reached within a few steps.
    "tiny": BenchConfig("tiny", 2, 16, 4, 8, 3, 3, 2, 3),
}
SWEEP_CAPACITIES = (200, 400, 800, 1600, 3200)
QUICK_SWEEP_CAPACITIES = (200, 400)


def make_stream(config: BenchConfig, num_steps: int, seed: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Per step: working memories ``[B, W, D]`` and lifespan logits ``[B, Rmax]`` (CPU).

    Drawn from a private generator so that the global RNG only feeds the implementations.
    """
    generator = torch.Generator().manual_seed(seed)
    scale = math.sqrt(DATA_SQUARED_NORM / config.hidden_dim)
    # remind returns at most the reminded STMs, the final LTMs and one -1 column.
    max_reminded = config.num_reminded_stm + config.num_final_ltms + 1
    stream = []
    for _ in range(num_steps):
        data = torch.randn(config.batch_size, config.num_working, config.hidden_dim, generator=generator) * scale
        logits = torch.randn(config.batch_size, max_reminded, generator=generator)
        stream.append((data, logits))
    return stream


def lifespan_delta(logits: torch.Tensor, num_reminded: int) -> torch.Tensor:
    """What a model passes: attention weight of each reminded memory x number reminded x 8; ``[B, R]``."""
    return logits[:, :num_reminded].softmax(dim=1) * num_reminded * LIFESPAN_EXTEND_SCALE
