import pytest

from experiment.tasks.base import optimizer_options


def test_optimizer_section_and_its_older_spelling_read_the_same():
    new = {"optimizer": {"learning_rate": 1e-3, "warmup_rate": 0.1, "weight_decay": 0.01}}
    old = {"optimization": {"learning_rate": 1e-3, "warmup_ratio": 0.1, "weight_decay": 0.01}}
    assert optimizer_options(new) == optimizer_options(old) == new["optimizer"]
    assert optimizer_options({}) == {}


def test_both_spellings_at_once_are_refused():
    with pytest.raises(ValueError, match="optimization"):
        optimizer_options({"optimizer": {}, "optimization": {}})
    with pytest.raises(ValueError, match="warmup_ratio"):
        optimizer_options({"optimizer": {"warmup_rate": 0.1, "warmup_ratio": 0.1}})
