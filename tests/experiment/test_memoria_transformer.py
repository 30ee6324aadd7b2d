import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from experiment.models import build_model
from experiment.models.memoria_transformer import MemoriaTransformerConfig, MemoriaTransformerLMHeadModel


def _model(config: dict) -> MemoriaTransformerLMHeadModel:
    return MemoriaTransformerLMHeadModel(MemoriaTransformerConfig(**config)).eval()


def _run_segments(model, segments):
    model.reset_memory()
    state, outputs = None, []
    for segment in segments:
        output = model(segment, memory_hidden_states=state)
        state = output.memory_hidden_states
        outputs.append(output)
    return outputs


def test_forward_backward_over_segments_trains_every_part(tiny_memoria):
    model = _model(tiny_memoria).train()
    segments = torch.randint(0, 21, (3, 2, 10))
    outputs = _run_segments(model, segments)
    assert outputs[0].reminded_indices is None  # nothing to read on the first segment
    loss = sum(model(s, labels=s).loss for s in [segments[0]])
    assert outputs[2].logits.shape == (2, 10, 21)
    assert outputs[2].reminded_indices.shape == outputs[2].lifespan_delta.shape
    loss = loss + outputs[2].logits.logsumexp(-1).mean()
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    assert grads["transformer.memory.abstractor.query_embeddings"].abs().sum() > 0
    assert grads["transformer.h.0.memory.cross_attention.query.weight"].abs().sum() > 0


def test_memory_carried_across_segments_changes_the_output_and_reset_restores_it(tiny_memoria):
    model = _model(tiny_memoria)
    segments = torch.randint(0, 21, (3, 2, 10))
    with torch.no_grad():
        carried = _run_segments(model, segments)
        alone = model(segments[2])
        reset = _run_segments(model, segments)
    assert not torch.allclose(carried[2].logits, alone.logits, atol=1e-5)
    torch.testing.assert_close(carried[2].logits, reset[2].logits)  # reset between examples: same again
    assert model.memoria.engrams.memory_length > 0


def test_lifespan_delta_reaches_memoria(tiny_memoria):
    model = _model(tiny_memoria)
    segments = torch.randint(0, 21, (3, 1, 10))
    with torch.no_grad():
        outputs = _run_segments(model, segments)
    delta, indices = outputs[2].lifespan_delta, outputs[2].reminded_indices
    assert (delta >= 0).all()
    # Attention over the real reminded memories sums to 1 per position, so the deltas sum to R * scale.
    real = indices >= 0
    torch.testing.assert_close(delta[real].sum(), torch.tensor(indices.size(1) * 8.0))


def test_save_and_load_round_trip_through_auto_classes(tiny_memoria, tmp_path):
    model = _model(tiny_memoria)
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "memoria_transformer"
    # the file keeps the names of the checkpoints written before memoria.nn (experiment/models/memory_names.py)
    saved = set(load_file(tmp_path / "model.safetensors"))
    assert "transformer.abstractor.query_embeddings" in saved and not any("memory.abstractor" in k for k in saved)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MemoriaTransformerLMHeadModel)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    segments = torch.randint(0, 21, (2, 2, 10))
    with torch.no_grad():
        torch.testing.assert_close(_run_segments(model, segments)[1].logits, _run_segments(loaded, segments)[1].logits)


def test_gpt2_weights_load_and_reproduce_gpt2_without_memory(tiny_memoria, tmp_path):
    gpt2_config = GPT2Config(
        vocab_size=21,
        n_positions=32,
        n_embd=16,
        n_layer=2,
        n_head=2,
        bos_token_id=None,
        eos_token_id=None,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    gpt2 = GPT2LMHeadModel(gpt2_config).eval()
    gpt2.save_pretrained(tmp_path)
    model = build_model(
        {
            "model_type": "memoria_transformer",
            "pretrained": str(tmp_path),
            "num_working_memories": 4,
            "num_reminded_stm": 4,
            "stm_capacity": 8,
            "num_final_ltms": 4,
            "ltm_search_depth": 2,
        }
    )
    model.eval()
    assert model.config.num_working_memories == 4
    torch.testing.assert_close(model.transformer.h[1].attn.c_attn.weight, gpt2.transformer.h[1].attn.c_attn.weight)
    tokens = torch.randint(0, 21, (2, 12))
    with torch.no_grad():  # first segment reads no memory, so the decoder must match GPT-2 exactly
        torch.testing.assert_close(model(tokens).logits, gpt2(tokens).logits, atol=1e-5, rtol=1e-5)


def test_memory_state_round_trip(tiny_memoria):
    model = _model(tiny_memoria)
    with torch.no_grad():
        _run_segments(model, torch.randint(0, 21, (3, 2, 10)))
    state = model.memory_state_dict()
    other = _model(tiny_memoria)
    other.load_memory_state_dict(state)
    assert other.memoria.engrams == model.memoria.engrams
    assert other.memoria.timestep == model.memoria.timestep


def test_reset_memory_rows_empties_the_chosen_rows_only(tiny_memoria):
    model = _model(tiny_memoria)
    with torch.no_grad():
        _run_segments(model, torch.randint(0, 21, (4, 3, 10)))
    fields = ("data", "engrams_types", "lifespan", "induce_counts")
    before = {name: getattr(model.memoria.engrams, name).clone() for name in fields}
    assert (before["engrams_types"] != 0).any(dim=1).all()  # every row holds engrams
    model.reset_memory_rows(torch.tensor([True, False, False]))
    engrams = model.memoria.engrams
    assert (engrams.engrams_types[0] == 0).all()
    for name in fields:
        assert torch.equal(getattr(engrams, name)[1:], before[name][1:]), name
    model.transformer.reset_memory_rows(torch.tensor([False, False, True]))  # the base model has it too
    assert (model.memoria.engrams.engrams_types[2] == 0).all()
    assert torch.equal(model.memoria.engrams.data[1], before["data"][1])


def _memory_path_at_init(width: int, memory_init: str) -> dict[str, float]:
    """Norms of the memories against the hidden states they summarise, and how far the attention over distinct
    reminded memories is from uniform, in a freshly initialised model after four segments of random tokens."""
    torch.manual_seed(0)
    config = dict(
        vocab_size=32,
        n_positions=32,
        n_embd=width,
        n_layer=1,
        n_head=4 if width < 512 else 8,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        num_working_memories=8,
        num_reminded_stm=64,
        stm_capacity=64,
        ltm_search_depth=4,
        num_final_ltms=16,
        memory_init=memory_init,
        # what the abstractor's start alone does: the write norm would rescale every memory, the zero read would
        # change the hidden states written next
        memory_write_norm=False,
        memory_output_init="normal",
    )
    model = _model(config)
    calls = []
    hook = model.transformer.h[0].memory.cross_attention.register_forward_hook(lambda m, i, o: calls.append(o[1]))
    with torch.no_grad():
        outputs = _run_segments(model, torch.randint(0, 32, (4, 4, 32)))
        working = model.transformer.abstractor(outputs[-1].memory_hidden_states)  # [B, W, D]
    hook.remove()
    weights = calls[-1]  # the reminded pass of the last segment, [B, H, L, R]
    reminded = model.memoria.engrams.data  # the engrams the last segment read are among these
    distinct = torch.cdist(reminded, reminded)[:, ~torch.eye(reminded.size(1), dtype=torch.bool)].min()
    return {
        "memory_to_hidden": (working.norm(dim=-1).mean() / outputs[-1].memory_hidden_states.norm(dim=-1).mean()).item(),
        "attention_spread": (weights.std(dim=-1) / weights.mean(dim=-1)).mean().item(),
        "min_distance": distinct.item(),
        "num_reminded": weights.size(-1),
    }


@pytest.mark.parametrize("width", [64, 128, 512, 1024])
def test_the_default_memory_path_is_alive_at_initialisation_at_every_width(width):
    alive = _memory_path_at_init(width, "scaled")
    assert alive["num_reminded"] > 1 and alive["min_distance"] > 0
    assert 0.25 < alive["memory_to_hidden"] < 4.0  # memories as large as the states they summarise
    # uniform attention has zero spread; the paper's initialisation at width 64 gives ~1e-5 (below)
    assert alive["attention_spread"] > 2e-3


def test_the_paper_initialisation_shrinks_the_memories_at_small_widths():
    paper = _memory_path_at_init(64, "paper")
    assert paper["memory_to_hidden"] < 0.01 and paper["attention_spread"] < 2e-4
    assert _memory_path_at_init(1024, "paper")["memory_to_hidden"] > 0.1  # near the paper's widths it lives


def test_memory_init_is_a_named_config_value():
    assert MemoriaTransformerConfig().memory_init == "scaled"
    with pytest.raises(ValueError, match="memory_init"):
        MemoriaTransformerConfig(memory_init="xavier")


FRESH_PROCESS_LOAD = """
import sys, torch
from transformers import AutoModelForCausalLM
try:
    AutoModelForCausalLM.from_pretrained("model")
except ValueError as error:
    print("without trust_remote_code:", "trust_remote_code=True" in str(error))
model = AutoModelForCausalLM.from_pretrained("model", trust_remote_code=True).eval()
carried = model.load_memory("model")
torch.manual_seed(5)
with torch.no_grad():
    torch.save(model(torch.load("segment.pt"), memory_hidden_states=carried).logits, "logits.pt")
print("experiment imported:", "experiment" in sys.modules)
"""


def test_saved_model_and_memory_load_in_a_fresh_process_without_importing_experiment(tiny_memoria, tmp_path):
    model = _model(tiny_memoria)
    segments = torch.randint(0, 21, (3, 2, 10))
    with torch.no_grad():
        carried = _run_segments(model, segments[:2])[-1].memory_hidden_states
    model.save_pretrained(tmp_path / "model")  # the weights, the config with auto_map, the model's code
    model.save_memory(tmp_path / "model", carried)  # the documents' state: an explicit call
    assert (tmp_path / "model" / "memoria_transformer.py").is_file()
    torch.save(segments[2], tmp_path / "segment.pt")
    torch.manual_seed(5)
    with torch.no_grad():
        expected = model(segments[2], memory_hidden_states=carried).logits

    environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    environment["PYTHONPATH"] = str(Path(__file__).parents[2])  # for memoria; experiment is never imported
    finished = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_LOAD],
        cwd=tmp_path,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "without trust_remote_code: True" in finished.stdout
    assert "experiment imported: False" in finished.stdout
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected)


def test_load_memory_restores_the_engrams_and_names_a_missing_file(tiny_memoria, tmp_path):
    model = _model(tiny_memoria)
    with torch.no_grad():
        _run_segments(model, torch.randint(0, 21, (3, 2, 10)))
    saved = model.memoria.engrams
    model.save_memory(tmp_path)
    model.reset_memory()
    assert model.load_memory(tmp_path) is None
    assert model.memoria.engrams == saved
    with pytest.raises(FileNotFoundError, match="save_memory"):
        model.load_memory(tmp_path / "nowhere")


def test_a_zero_memory_gate_starts_the_model_as_the_memoryless_decoder(tiny_memoria):
    model = _model({**tiny_memoria, "memory_gate": 0.0})
    assert model.transformer.h[0].memory.gate is not None
    segments = torch.randint(0, 21, (3, 2, 10))
    with torch.no_grad():
        carried = _run_segments(model, segments)
        alone = model(segments[2])
    assert carried[2].reminded_indices is not None and (carried[2].reminded_indices >= 0).any()
    torch.testing.assert_close(carried[2].logits, alone.logits, rtol=0, atol=0)  # read, but nothing added yet


def test_write_gradient_segments_send_a_later_loss_to_the_abstractor(tiny_memoria):
    """Earlier segments run under no_grad; a loss on what the next segment is reminded of reaches the abstractor
    with the option (through the engrams of the last writes) and not without it."""
    grads = {}
    for segments_back in (0, 2):
        torch.manual_seed(0)
        model = _model({**tiny_memoria, "write_gradient_segments": segments_back}).train()
        tokens = torch.randint(0, 21, (4, 2, 10))
        state = None
        with torch.no_grad():
            for segment in tokens[:3]:
                state = model(segment, memory_hidden_states=state).memory_hidden_states
        read = model.transformer.memory(state)
        reminded = read.reminded[read.reminded_mask]
        assert reminded.numel() > 0
        model.zero_grad()
        if reminded.requires_grad:
            reminded.pow(2).sum().backward()
        grads[segments_back] = model.transformer.abstractor.query_embeddings.grad
    assert grads[0] is None
    assert grads[2] is not None and grads[2].abs().max() > 0


def test_new_configs_take_todays_memory_forms_and_configs_saved_before_them_their_earlier_ones(tmp_path, tiny_memoria):
    """memory_output_init / memory_write_norm / unroll_segments: today's defaults for a new config (and kept when
    saved), the forms a model saved before the fields existed was trained with when its config.json lacks them."""
    fresh = MemoriaTransformerConfig(**{k: v for k, v in tiny_memoria.items() if k != "memory_output_init"})
    assert (fresh.memory_output_init, fresh.memory_write_norm, fresh.unroll_segments) == ("zero", True, 4)
    model = MemoriaTransformerLMHeadModel(fresh)
    readers = [block.memory for block in model.transformer.h]
    assert all(reader.cross_attention.output.weight.abs().max() == 0 for reader in readers)
    assert model.transformer.memory.write_norm is not None and model.transformer.memory.unroll_segments == 4
    model.save_pretrained(tmp_path / "new")
    again = MemoriaTransformerLMHeadModel.from_pretrained(tmp_path / "new")
    assert (again.config.memory_output_init, again.config.memory_write_norm, again.config.unroll_segments) == (
        "zero",
        True,
        4,
    )
    saved = fresh.to_dict()
    for field in MemoriaTransformerConfig.EARLIER_FORMS:
        del saved[field]
    old = MemoriaTransformerConfig.from_dict(saved)  # a config.json written before the fields
    assert (old.memory_output_init, old.memory_write_norm, old.unroll_segments) == ("normal", False, 0)
    old_model = MemoriaTransformerLMHeadModel(old)
    assert old_model.transformer.memory.write_norm is None and old_model.transformer.memory.unroll_segments == 0
    assert all(block.memory.cross_attention.output.weight.abs().max() > 0 for block in old_model.transformer.h)
    del saved["transformers_version"]  # a hand-written dict is a new config
    assert MemoriaTransformerConfig.from_dict(saved).memory_write_norm is True
    with pytest.raises(ValueError, match="memory_output_init"):
        MemoriaTransformerConfig(memory_output_init="ones")
