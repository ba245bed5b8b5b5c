"""``run_batch(watch=)``: chosen files gated in the driver, their evaluation shown once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engine import ExecutorSpec, GatedSample, resolve_inputs, run_batch
from gating import Evaluator


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from engine.demo import make_demo_study

    root = tmp_path_factory.mktemp("watch")
    study = make_demo_study(root / "study", n_events=3000, n_genes=100, n_patients=4,
                             n_biopsy_patients=4, missing_baseline_flow=0)
    fcs = root / "study" / "fcs"
    good = sorted(fcs.glob("*.fcs"))
    (fcs / "zz_text.fcs").write_text("not an FCS file\n")
    return {"fcs": fcs, "good": good, "strategy": study.strategy}


def _counts(run: Any) -> pd.DataFrame:
    return run.populations.sort_values(["sample", "population"]).reset_index(drop=True)


def test_watched_files_show_the_evaluation_their_counts_come_from(
    archive: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    inputs = resolve_inputs([archive["fcs"]])
    plain = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "plain",
                      executor=ExecutorSpec(kind="inprocess"))

    built: list[str] = []
    init = Evaluator.__init__

    def counting(self: Any, plan: Any, sample: Any) -> None:
        built.append(Path(sample.path).name)
        init(self, plan, sample)

    monkeypatch.setattr(Evaluator, "__init__", counting)
    seen: dict[str, GatedSample] = {}
    watched = [str(p) for p in archive["good"][:2]]
    bad = str(archive["fcs"] / "zz_text.fcs")

    def keep(gated: GatedSample) -> None:
        seen[gated.path] = gated

    def broken(gated: GatedSample) -> None:
        raise RuntimeError("a figure could not be drawn")

    run = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "watched",
                    executor=ExecutorSpec(kind="inprocess"),
                    watch={watched[0]: keep, watched[1]: broken, bad: keep})
    # the counts are those of an unwatched run, each file once, the bad file still recorded
    pd.testing.assert_frame_equal(_counts(run), _counts(plain))
    assert sorted(Path(p).name for p in run.errors["path"]) == ["zz_text.fcs"]
    # a failing watcher does not fail its file
    assert watched[1] not in set(run.errors["path"])
    # each good file evaluated exactly once, the watched ones included
    assert sorted(built) == sorted(p.name for p in archive["good"])
    assert run.executor.endswith("; 3 watched in the driver")
    # the watcher saw the evaluation that produced the stored counts
    gated = seen[watched[0]]
    assert isinstance(gated.evaluation, Evaluator)
    stored = run.populations[run.populations["sample"] == gated.name]
    for population, count in zip(stored["population"], stored["count"], strict=True):
        assert gated.evaluation.count(population) == count
    assert bad not in seen  # an unreadable file has nothing to show

    # resumed: nothing is gated again, watchers are not called
    seen.clear()
    built.clear()
    again = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "watched",
                      executor=ExecutorSpec(kind="inprocess"), watch={watched[0]: keep})
    assert again.resumed == len(inputs)  # its error record too (same size and mtime)
    assert seen == {} and built == []
