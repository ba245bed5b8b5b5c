"""``phenoflow convert``: every target format, real files, refusals as one line with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import gating
from engine.cli import main
from tests.gating.test_gatingml import _assert_valid


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from engine.demo import make_demo_study

    root = tmp_path_factory.mktemp("demo")
    make_demo_study(root, n_events=2000, n_genes=100)
    return sorted(root.rglob("*.fcs"))[:2]


def _run(*args: str):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


def _counts(strategy: gating.Strategy, path: Path) -> dict[str, int]:
    data = gating.read_fcs(path)
    table = gating.apply_plan(gating.compile_plan(strategy, data), data).counts
    return dict(zip(table["population"], table["count"], strict=True))


def test_preset_to_gatingml_binds_channels_and_validates(demo_files, tmp_path):
    out = tmp_path / "panel.xml"
    result = _run("study_panel", "--to", "gatingml", "--out", out, "--fcs", demo_files[0])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    text = out.read_text(encoding="utf-8")
    _assert_valid(text)
    assert 'data-type:name="APC-H7-A"' in text and 'data-type:name="CD3"' not in text
    back = gating.read_gatingml(out)
    assert _counts(back, demo_files[0]) == _counts(gating.preset("study_panel"), demo_files[0])


def test_gatingml_to_yaml_and_back(demo_files, tmp_path):
    xml, yml = tmp_path / "a.xml", tmp_path / "a.yaml"
    assert _run("study_panel", "--to", "gatingml", "--out", xml).exit_code == 0
    result = _run(xml, "--to", "yaml", "--out", yml)
    assert result.exit_code == 0, result.output
    again = gating.read_strategy_yaml(yml)
    assert _counts(again, demo_files[0]) == _counts(gating.preset("study_panel"), demo_files[0])


def test_flowjo_export_and_its_refusal_as_gatingml(demo_files, tmp_path):
    wsp = tmp_path / "panel.wsp"
    # the study panel's Boolean NOT populations: see test_export_interop's xfail (evaluator bug);
    # a strategy without them is written and verified
    s = gating.preset("study_panel")
    keep = [g for g in s.gates if not isinstance(g, gating.BooleanGate)]
    plain = tmp_path / "plain.yaml"
    plain.write_text(gating.write_strategy_yaml(gating.Strategy(gates=tuple(keep),
                     transforms=s.transforms)), encoding="utf-8")
    result = _run(plain, "--to", "flowjo", "--out", wsp, "--fcs", demo_files[0], "--fcs", demo_files[1])
    assert result.exit_code == 0, result.output
    ws = gating.read_flowjo(wsp)
    assert [x.fcs_file for x in ws.samples] == [f.name for f in demo_files]
    # a FlowJo sample: its scales are FlowJo transforms and its rectangles count
    # min < x <= max; Gating-ML holds neither (the first found is named, with its gate)
    xml = tmp_path / "back.xml"
    result = _run(wsp, "--sample", demo_files[0].name, "--to", "gatingml", "--out", xml)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "cannot be written as gatingml" in result.output and "gate '/Lymphocytes" in result.output
    assert "FlowJoLinear" in result.output or "min < x <= max" in result.output
    assert not xml.exists()
    # several samples and no choice: a usage mistake naming the options
    result = _run(wsp, "--to", "yaml", "--out", tmp_path / "x.yaml")
    assert result.exit_code == 2 and "--group" in result.output


def test_flowjo_needs_fcs_files_and_the_right_suffix(tmp_path):
    result = _run("study_panel", "--to", "flowjo", "--out", tmp_path / "a.wsp")
    assert result.exit_code == 2 and "--fcs" in result.output
    result = _run("study_panel", "--to", "gatingml", "--out", tmp_path / "a.yaml")
    assert result.exit_code == 2 and ".xml" in result.output


def test_flowjo_transform_refused_in_gatingml_names_the_gate(tmp_path):
    strategy = gating.Strategy(
        gates=(gating.RectangleGate("g", (gating.Dimension("FL1-A", transform="fj"),),
                                    ((0.2, 0.8),), name="g"),),
        transforms={"fj": gating.FlowJoBiex(max_range=262144, width=-10, positive=4.42,
                                            negative=0)},
    )
    src = tmp_path / "fj.yaml"
    src.write_text(gating.write_strategy_yaml(strategy), encoding="utf-8")
    result = _run(src, "--to", "gatingml", "--out", tmp_path / "fj.xml")
    assert result.exit_code == 2, result.output
    assert "FlowJoBiex" in result.output and "gate" in result.output
