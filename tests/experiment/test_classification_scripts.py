import json
import math
from pathlib import Path

import pytest
from scipy import stats

from experiment.scripts import classification_split_check, classification_summary
from experiment.scripts.classification_summary import one_tailed_t_test, summarise

FIXTURES = Path(__file__).parent / "fixtures" / "hyperpartisan"


def test_t_test_against_a_hand_computation():
    # means 4 and 2, variances 1 and 1, n 3 and 3: se = sqrt(2/3), t = sqrt(6), df = 4 for both tests.
    # For df = 4, P(T >= t) = 1/2 - (3/4) a (1 - a^2/3) with a = t / sqrt(4 + t^2).
    a = math.sqrt(6) / math.sqrt(10)
    p = 0.5 - 0.75 * a * (1 - a * a / 3)
    for equal_var in (False, True):
        result = one_tailed_t_test([3, 4, 5], [1, 2, 3], equal_var=equal_var)
        assert result.t == pytest.approx(math.sqrt(6)) and result.df == pytest.approx(4)
        assert result.p_one_tailed == pytest.approx(p)


@pytest.mark.parametrize("equal_var", [False, True])
def test_t_test_matches_scipy(equal_var):
    first, second = [96.5, 97.1, 95.8, 96.9, 96.3], [95.0, 95.6, 94.1, 95.9, 95.2, 94.8]
    ours = one_tailed_t_test(first, second, equal_var=equal_var)
    theirs = stats.ttest_ind(first, second, equal_var=equal_var, alternative="greater")
    assert ours.t == pytest.approx(theirs.statistic) and ours.p_one_tailed == pytest.approx(theirs.pvalue)
    assert one_tailed_t_test(second, first, equal_var).p_one_tailed == pytest.approx(1 - theirs.pvalue)


def test_summary_and_errors():
    assert summarise([1.0, 2.0, 3.0, 4.0]) == classification_summary.Summary(4, 2.5, math.sqrt(5 / 3))
    assert summarise([7.0]).std == 0.0
    with pytest.raises(ValueError, match="at least two runs"):
        one_tailed_t_test([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="zero variance"):
        one_tailed_t_test([1.0, 1.0], [0.0, 0.0])


def test_summary_cli_reads_run_folders(tmp_path):
    runs = []
    for name, value in [("a1", 0.9), ("a2", 0.8), ("a3", 0.85), ("b1", 0.7), ("b2", 0.75)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "test_metrics.json").write_text(json.dumps({"test/f1": value}))
        runs.append(str(tmp_path / name))
    result = classification_summary.main(["--runs", *runs[:3], "--against", *runs[3:], "--output", str(tmp_path / "s")])
    assert result["runs"]["mean"] == pytest.approx(0.85) and result["against"]["mean"] == pytest.approx(0.725)
    assert result["t_test"]["p_one_tailed"] == pytest.approx(
        stats.ttest_ind([0.9, 0.8, 0.85], [0.7, 0.75], equal_var=False, alternative="greater").pvalue
    )
    assert json.loads((tmp_path / "s").read_text()) == result
    with pytest.raises(KeyError, match="no 'test/accuracy'"):
        classification_summary.main(["--runs", runs[0], "--metric", "test/accuracy"])


def test_split_check_cli(capsys):
    common = ["--articles", str(FIXTURES / "articles-byarticle-fixture.xml")]
    common += ["--ground-truth", str(FIXTURES / "ground-truth-byarticle-fixture.xml")]
    assert classification_split_check.main(common + ["--splits", str(FIXTURES / "hp-splits.json")]) == 0
    assert "no article is shared" in capsys.readouterr().out
    assert classification_split_check.main(common + ["--splits", str(FIXTURES / "hp-splits-overlap.json")]) == 1
    out = capsys.readouterr().out
    assert "train: 4, dev: 1, test: 3" in out and "train ∩ test: 2 of 3 test articles" in out
