"""Hostile strategy files through the public entry point :func:`gating.load_strategy`.

Gating-ML and FlowJo XML with external entities (to a real local secret), parameter entities,
entity-expansion bombs, DTDs, XInclude and network references must be refused with a typed
error naming the file; nothing may be fetched (a loopback listener proves no connection
arrives) and the secret's content must appear nowhere. YAML/JSON strategies are loaded safely:
Python tags are refused, alias bombs and recursive aliases are refused quickly and without
building the expansion, deep nesting is a typed error. Finally the code base holds no
``pickle``/``marshal``/``shelve``/``yaml.load(``/``eval(``.
"""

from __future__ import annotations

import re
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runtime import MAX_YAML_NODES
from gating import StrategyError, load_strategy
from gating._gatingml._xml import DATATYPE_NS, GATING_NS, TRANSFORMS_NS

REPO = Path(__file__).resolve().parents[2]
SECRET = "TOP-SECRET-7c1e9f0a"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP port that records whether anything connected."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _connections(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


# ---- XML -----------------------------------------------------------------------------------
GML_HEAD = (
    f'<gating:Gating-ML xmlns:gating="{GATING_NS}" xmlns:transforms="{TRANSFORMS_NS}" '
    f'xmlns:data-type="{DATATYPE_NS}" xmlns:xi="http://www.w3.org/2001/XInclude">'
)
GML_RECT = (
    '<gating:RectangleGate gating:id="R1"><gating:dimension gating:compensation-ref="FCS" '
    'gating:min="1" gating:max="2"><data-type:fcs-dimension data-type:name="FL1-H"/>'
    "</gating:dimension></gating:RectangleGate>"
)
FJ_NS = (
    f'xmlns:gating="{GATING_NS}" xmlns:transforms="{TRANSFORMS_NS}" '
    f'xmlns:data-type="{DATATYPE_NS}" xmlns:xi="http://www.w3.org/2001/XInclude"'
)


def _gatingml(prolog: str, inside: str) -> str:
    return (f'<?xml version="1.0"?>{prolog}{GML_HEAD}<data-type:custom_info>{inside}'
            f"</data-type:custom_info>{GML_RECT}</gating:Gating-ML>")


def _flowjo(prolog: str, inside: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<Workspace version="20.0" '
        f'flowJoVersion="10.8.1" {FJ_NS}><Groups/><SampleList><Sample>'
        f'<DataSet uri="file:/data/s.fcs" sampleID="1"/><Transformations/><Keywords>'
        f'<Keyword name="$TOT" value="{inside}"/></Keywords>'
        '<SampleNode name="s.fcs" count="7" sampleID="1"><Subpopulations/></SampleNode>'
        "</Sample></SampleList></Workspace>"
    )


LAUGHS = "".join(
    f'<!ENTITY l{i} "{f"&l{i - 1};" * 10 if i else "lol"}">' for i in range(10)
)
QUADRATIC = f'<!ENTITY big "{"x" * 50_000}">'

# (prolog, content, what the prolog does); {secret} and {port} are filled in per test
HOSTILE = {
    "external-entity-file": ('<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>', "&xxe;"),
    "external-entity-http": (
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/e">]>', "&xxe;"),
    "parameter-entity": (
        '<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.ent"> %p;]>', ""),
    "parameter-entity-file": ('<!DOCTYPE x [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>', ""),
    "billion-laughs": (f"<!DOCTYPE x [{LAUGHS}]>", "&l9;"),
    "quadratic-blowup": (f"<!DOCTYPE x [{QUADRATIC}]>", "&big;" * 2000),
    "internal-dtd": ('<!DOCTYPE x [<!ELEMENT x ANY>]>', ""),
    "external-dtd": ('<!DOCTYPE x SYSTEM "http://127.0.0.1:{port}/x.dtd">', ""),
    "public-dtd": ('<!DOCTYPE x PUBLIC "-//EVIL//DTD//EN" "http://127.0.0.1:{port}/p.dtd">', ""),
}
XINCLUDE = {
    "xinclude-file": '<xi:include href="file://{secret}" parse="text"/>',
    "xinclude-http": '<xi:include href="http://127.0.0.1:{port}/i.xml"/>',
}


def _fill(text: str, secret: Path, port: int) -> str:
    return text.replace("{secret}", str(secret)).replace("{port}", str(port))


def _refused(path: Path, listener: socket.socket) -> StrategyError:
    with pytest.raises(StrategyError) as info:
        load_strategy(path)
    err = info.value
    assert str(path) in str(err), f"the error does not name the file: {err}"
    assert err.source == str(path)
    assert SECRET not in repr(err) and SECRET not in str(err.__cause__ or "")
    assert _connections(listener) == 0, "something was fetched from the network"
    return err


@pytest.mark.parametrize("fmt", ["gatingml", "flowjo"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_dtds_and_entities_are_refused(case, fmt, tmp_path, secret, listener):
    prolog, content = (_fill(x, secret, listener.getsockname()[1]) for x in HOSTILE[case])
    build = _gatingml if fmt == "gatingml" else _flowjo
    path = tmp_path / ("hostile.xml" if fmt == "gatingml" else "hostile.wsp")
    path.write_text(build(prolog, content))
    tracemalloc.start()
    err = _refused(path, listener)
    assert re.search(r"DTD|document type|entit|not a readable workspace", str(err)), str(err)
    grown_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert grown_mib < 50, f"refusing the document allocated {grown_mib:.0f} MiB"


def test_a_dtd_longer_than_the_format_sniff_is_still_refused(tmp_path, listener):
    """A DOCTYPE whose internal subset hides the root element from the 4 kB format sniff."""
    path = tmp_path / "long-dtd.xml"
    padding = "".join(f'<!ENTITY e{i} "{"y" * 60}">' for i in range(100))
    path.write_text(_gatingml(f"<!DOCTYPE x [{padding}]>", ""))
    err = _refused(path, listener)
    assert "DTD" in str(err)


@pytest.mark.parametrize("fmt", ["gatingml", "flowjo"])
@pytest.mark.parametrize("case", sorted(XINCLUDE))
def test_xinclude_is_refused_and_nothing_is_included(case, fmt, tmp_path, secret, listener):
    element = _fill(XINCLUDE[case], secret, listener.getsockname()[1])
    if fmt == "gatingml":
        path = tmp_path / "xi.xml"
        path.write_text(_gatingml("", element))
    else:
        path = tmp_path / "xi.wsp"
        path.write_text(_flowjo("", "7").replace("<Groups/>", f"<Groups/>{element}"))
    err = _refused(path, listener)
    assert "XInclude" in str(err)


def test_the_untouched_documents_read(tmp_path):
    """The hostile cases differ from these valid documents only in what is being refused."""
    g = tmp_path / "ok.xml"
    g.write_text(_gatingml("", "a note"))
    assert [x.id for x in load_strategy(g).gates] == ["R1"]
    w = tmp_path / "ok.wsp"
    w.write_text(_flowjo("", "7"))
    assert [s.name for s in load_strategy(w).samples] == ["s.fcs"]


# ---- YAML and JSON ---------------------------------------------------------------------------
YAML_OK = "phenoflow-strategy: 1\ngates:\n  - {name: A, range: {dim: FSC-A, min: 0}}\n"


def _laughs(levels: int, width: int = 10) -> str:
    lines = ["transforms:", "  t0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  t{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("!!python/object/apply:os.system ['echo pwned']\n", "python/object"),
        (YAML_OK + "name: !!python/name:os.system\n", "python/name"),
        ("phenoflow-strategy: 1\n" + _laughs(9) + "name: *a8\ngates: []\n", "alias bomb"),
        ("phenoflow-strategy: 1\nname: &r [*r]\ngates: []\n", "recursive alias"),
        ("phenoflow-strategy: 1\ndimensions: &d {FSC-A: *d}\ngates: []\n", "recursive alias"),
        ("phenoflow-strategy: 1\nname: " + "[" * 2_000 + "]" * 2_000 + "\n", "nested too deeply"),
        ('{"phenoflow-strategy": 1, "name": ' + "[" * 2_000 + "]" * 2_000 + "}", "nested too deeply"),
    ],
    ids=["python-object", "python-name", "billion-laughs", "recursive-list", "recursive-map",
         "deep-yaml", "deep-json"],
)
def test_unsafe_yaml_is_refused_quickly_and_in_bounded_memory(text, words, tmp_path):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    traced = words != "nested too deeply"  # tracemalloc slows deep recursion 40x
    if traced:
        tracemalloc.start()
    with pytest.raises(StrategyError, match=words) as info:
        load_strategy(path)
    assert str(path) in str(info.value)
    if not traced:
        return
    grown_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert grown_mib < 100, f"refusing the document allocated {grown_mib:.0f} MiB"


def test_anchors_within_the_bound_are_still_allowed(tmp_path):
    """Anchors are legitimate YAML: a modest expansion below the bound reads normally."""
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "phenoflow-strategy: 1\ntransforms:\n  f: &f {type: logicle, T: 262144, W: 0.5, M: 4.5, A: 0}\n"
        "  g: *f\ndimensions:\n  FL1-A: {transform: f}\n  FL2-A: {transform: g}\n"
        "gates:\n  - {name: A, rectangle: {FL1-A: [0.1, 0.9], FL2-A: [0.1, 0.9]}}\n")
    strategy = load_strategy(path)
    assert [g.id for g in strategy.gates] == ["/A"]
    assert MAX_YAML_NODES >= 100_000


# ---- no unsafe deserialisation anywhere ------------------------------------------------------
BANNED = re.compile(r"\bimport\s+(?:c?pickle|marshal|shelve|dill|cloudpickle)\b"
                    r"|\bfrom\s+(?:c?pickle|marshal|shelve|dill|cloudpickle)\b"
                    r"|\b(?:c?pickle|marshal|shelve|dill|cloudpickle)\.\w+\("
                    r"|\byaml\.(?:load|load_all|unsafe_load|full_load)\("
                    r"|(?<![\w.])eval\(|(?<![\w.])exec\(")


def test_no_pickle_marshal_shelve_yaml_load_or_eval_in_the_code_base():
    files = [p for pkg in ("engine", "gating", "expression", "benchmarks")
             for p in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 50
    hits = []
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if BANNED.search(line.split("#", 1)[0]):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert hits == []
    # the pattern itself is alive: it catches what it is meant to
    for bad in ("import pickle", "x = yaml.load(s)", "eval(text)", "marshal.loads(b)",
                "from shelve import open"):
        assert BANNED.search(bad), bad
