"""load_strategy picks the front-end from the file's root element, not its name."""

from __future__ import annotations

import pytest

from gating import FlowJoWorkspace, Strategy, StrategyError, load_strategy, strategy_format
from tests.conftest import CONFORMANCE, require_shared


def test_formats_of_the_conformance_files():
    root = require_shared(CONFORMANCE)
    for wsp in sorted((root / "flowjo").rglob("*.wsp")):  # they declare the Gating-ML namespace too
        assert strategy_format(wsp) == "flowjo"
        assert isinstance(load_strategy(wsp), FlowJoWorkspace)
    for xml in sorted((root / "gatingml2" / "xml").glob("*.xml")):
        assert strategy_format(xml) == "gatingml"
        assert isinstance(load_strategy(xml), Strategy)


def test_renamed_files_and_presets(tmp_path):
    wsp = require_shared(CONFORMANCE / "flowjo" / "simple_line_example" / "simple_poly_and_rect.wsp")
    renamed = tmp_path / "workspace.xml"
    renamed.write_bytes(wsp.read_bytes())
    assert strategy_format(renamed) == "flowjo"
    assert isinstance(load_strategy("study_panel"), Strategy)
    other = tmp_path / "x.xml"
    other.write_text('<?xml version="1.0"?>\n<!-- a comment --><svg xmlns="http://www.w3.org/2000/svg"/>')
    with pytest.raises(StrategyError, match="root element <svg>"):
        load_strategy(other)
