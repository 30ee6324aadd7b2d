"""Shared fixtures of the experiment tests: tiny sizes only, nothing downloaded."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_memoria() -> dict:
    """Memoria Transformer config fields at test size."""
    return dict(
        vocab_size=21,
        n_positions=32,
        n_embd=16,
        n_layer=2,
        n_head=2,
        num_working_memories=4,
        num_reminded_stm=4,
        stm_capacity=8,
        ltm_search_depth=2,
        initial_lifespan=3,
        num_final_ltms=4,
        lifespan_extend_scale=8.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )


@pytest.fixture
def tiny_xl() -> dict:
    """Transformer-XL config fields at test size."""
    return dict(vocab_size=21, n_embd=16, n_layer=2, n_head=2, mem_len=8, dropout=0.0, attn_dropout=0.0)
