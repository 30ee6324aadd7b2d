import pytest

from experiment.data.long_range import LongRangeConfig, generate_documents


def test_evidence_sits_only_in_the_evidence_segment_and_decides_the_label():
    config = LongRangeConfig(vocab_size=40, num_segments=3, content_length=10, evidence_length=3, evidence_segment=1)
    documents = generate_documents(config, 50, seed=0)
    assert {label for _, label in documents} == {0, 1}
    for tokens, label in documents:
        assert len(tokens) == 30
        evidence = [i for i, t in enumerate(tokens) if t < config.first_distractor_id]
        assert len(evidence) == 3 and evidence == list(range(evidence[0], evidence[0] + 3))
        assert 10 <= evidence[0] and evidence[-1] < 20  # inside segment 1
        assert all(tokens[i] in config.evidence_ids(label) for i in evidence)
        assert all(3 <= t < 40 for t in tokens)  # no special token inside the text


def test_generation_is_deterministic_per_seed():
    config = LongRangeConfig(num_segments=2, content_length=8)
    assert generate_documents(config, 5, seed=3) == generate_documents(config, 5, seed=3)
    assert generate_documents(config, 5, seed=3) != generate_documents(config, 5, seed=4)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(evidence_segment=4), "evidence_segment must be in 0..3"),
        (dict(evidence_length=0), "evidence_length must be in 1..62"),
        (dict(vocab_size=11), "leaves no distractor tokens"),
    ],
)
def test_bad_configs_raise(fields, message):
    with pytest.raises(ValueError, match=message):
        LongRangeConfig(**fields)
