"""Shared fixtures of the experiment tests: tiny sizes only, nothing downloaded."""

from pathlib import Path

import pytest
import torch

# Tiny tensors gain nothing from threads, and on a shared CPU the thread pool spin-waits for cores.
torch.set_num_threads(1)


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
        # a read that changes the outputs from the start, so that tests of the memory's mechanics see it at once; the
        # default (a silent start) is tested by test_memoria_transformer.py's config test and tests/nn/test_unrolled.py
        memory_output_init="normal",
    )


@pytest.fixture
def tiny_xl() -> dict:
    """Transformer-XL config fields at test size."""
    return dict(vocab_size=21, n_embd=16, n_layer=2, n_head=2, mem_len=8, dropout=0.0, attn_dropout=0.0)


def tiny_encoder_fields(**overrides) -> dict:
    """Memoria BERT / RoBERTa encoder config fields at test size, no dropout; ``overrides`` replace any."""
    fields = dict(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return {**fields, **overrides}


def tiny_encoder_memory_fields(**overrides) -> dict:
    """Memoria BERT / RoBERTa memory config fields at test size; ``overrides`` replace any."""
    fields = dict(
        memory_layer_index=0,
        num_working_memories=3,
        memoria_num_reminded_stm=3,
        memoria_stm_capacity=6,
        memoria_ltm_search_depth=2,
        memoria_initial_lifespan=3,
        memoria_num_final_ltms=3,
    )
    return {**fields, **overrides}


def token_segments(count: int, vocab_size: int, batch: int = 2, length: int = 8) -> list[torch.Tensor]:
    """``count`` random segments [Batch, Length] of ids from 3 up (below 3: the special tokens)."""
    return [torch.randint(3, vocab_size, (batch, length)) for _ in range(count)]


def tiny_run_overrides(output_dir, data_dir) -> list[str]:
    """Overrides that shrink any sorting config to a 2-step run on 40-symbol sequences, 32 wide (the paper-size
    widths would spend the test budget writing checkpoints)."""
    return [
        "model.n_embd=32",
        "model.n_head=2",
        "trainer.log_every_n_steps=1",
        f"output_dir={output_dir}",
        f"data.dir={data_dir}",
        "data.sequence_length=40",
        'data.num_examples={"train": 4, "dev": 2, "test": 2}',
        "segment_length=16",
        "batch_size=2",
        "eval_batch_size=2",
        "trainer.max_steps=2",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_model_summary=false",
        "trainer.accelerator=cpu",
        "progress_refresh_rate=0",
    ]


def tiny_lm_overrides() -> list[str]:
    """Overrides that shrink any language-modelling config to 2 steps over a few byte-level segments of the
    enwik8-format fixture, with 1-layer, 16-wide models."""
    return [
        "data.dataset=bytes",
        f"data.path={Path(__file__).parent / 'fixtures' / 'lm' / 'enwik8_200'}",
        "data.segment_length=16",
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "model.n_embd=16",
        "model.n_layer=1",
        "model.n_head=2",
        "trainer.max_steps=2",
        "trainer.max_time=null",
        "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1",
        "trainer.enable_model_summary=false",
    ]


@pytest.fixture(scope="session")
def sorting_data_dir(tmp_path_factory):
    """A folder that the first tiny run fills with generated split files, shared by the later ones."""
    return tmp_path_factory.mktemp("sorting_data")


@pytest.fixture(scope="session")
def tiny_memoria_run(tmp_path_factory, sorting_data_dir):
    """Output folder of a 2-step training run of the tiny Memoria config through the real CLI."""
    from experiment.scripts import train

    output_dir = tmp_path_factory.mktemp("memoria_tiny_run")
    config = "experiment/configs/sorting/memoria_tiny.json"
    metrics = train.main(["--config", config, "--override", *tiny_run_overrides(output_dir, sorting_data_dir)])
    return output_dir, metrics
