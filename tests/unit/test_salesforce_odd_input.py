"""``baton import salesforce`` on input it cannot take as it is: elements named twice, names
that read alike, files that are not flow metadata at all, an ``--out`` that is no folder.
Each is reported with its file and line (or is an error saying what and where); no stage or
step is lost without a line in the report, and nothing is half written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from baton.definitions.loader import check_definitions
from baton.errors import BatonError
from baton.importers.salesforce import ImportReport, import_salesforce
from baton.importers.salesforce.names import distinct, ident, stage_name

CORPUS = Path(__file__).resolve().parents[1] / "data" / "salesforce"
ORDER = (CORPUS / "Order_Fulfillment.flow-meta.xml").read_text()

SECOND_FULFIL = """    <orchestratedStages>
        <name>Fulfil</name>
        <label>Fulfil again</label>
        <stageSteps>
            <name>Bill_Customer</name>
            <label>Bill</label>
            <actionName>Bill_Customer</actionName>
            <actionType>stepBackground</actionType>
        </stageSteps>
        <stageSteps>
            <name>Send_Invoice</name>
            <label>Invoice</label>
            <actionName>Send_Invoice</actionName>
            <actionType>stepBackground</actionType>
        </stageSteps>
    </orchestratedStages>
</Flow>"""


def background(name: str, action: str) -> str:
    return (f"<stageSteps><name>{name}</name><label>{name}</label><actionName>{action}"
            "</actionName><actionType>stepBackground</actionType></stageSteps>")


def imported(tmp_path: Path, text: str) -> tuple[ImportReport, dict[str, Any]]:
    src = tmp_path / "that.flow-meta.xml"
    src.write_text(text)
    out = tmp_path / "out"
    report = import_salesforce([src], out)
    (doc,) = [d for f in (out / "definitions").glob("*.yaml") if f.name != "objects.yaml"
              for d in yaml.safe_load_all(f.read_text())]
    return report, doc


def line_of(text: str, needle: str, nth: int = 1) -> int:
    at = -1
    for _ in range(nth):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1


def valid(tmp_path: Path) -> list[str]:
    _, issues = check_definitions([tmp_path / "out" / "definitions"], known_flows=None)
    return [str(i) for i in issues]


# ---- names given twice ---------------------------------------------------------------------
def test_a_second_stage_of_a_name_is_reported_not_lost_silently(tmp_path: Path) -> None:
    text = ORDER.replace("</Flow>", SECOND_FULFIL)
    report, doc = imported(tmp_path, text)
    (fulfil,) = doc["stages"]
    assert [s["name"] for s in fulfil["steps"]] == ["reserve_stock", "pack_and_ship"]
    (why,) = report.untranslated
    second = line_of(text, "<orchestratedStages>", 2)
    assert (why.file.endswith("that.flow-meta.xml"), why.line) == (True, second)
    assert why.construct == "stage Fulfil"
    assert f"the stage at line {line_of(text, '<orchestratedStages>')}" in why.reason
    assert "left out with its 2 step(s)" in why.reason
    assert "## Not translated (1)" in (tmp_path / "out" / "IMPORT_REPORT.md").read_text()
    assert valid(tmp_path) == []


def test_a_second_step_of_a_name_is_reported_and_the_output_validates(tmp_path: Path
                                                                         ) -> None:
    text = ORDER.replace("        <stageSteps>\n            <name>Pack_And_Ship</name>",
                         "        " + background("Reserve_Stock", "Reserve_Other") + "\n"
                         "        <stageSteps>\n            <name>Pack_And_Ship</name>")
    report, doc = imported(tmp_path, text)
    steps = doc["stages"][0]["steps"]
    assert [(s["name"], s.get("flow")) for s in steps] == [
        ("reserve_stock", "salesforce.Reserve_Stock"), ("pack_and_ship", None)]
    (why,) = report.untranslated
    assert (why.line, why.construct) == (line_of(text, "<name>Reserve_Stock", 2),
                                         "step Reserve_Stock")
    assert f"the step at line {line_of(text, '<stageSteps>')}" in why.reason
    assert valid(tmp_path) == []


def test_a_decision_named_as_a_stage_is_reported(tmp_path: Path) -> None:
    text = ORDER.replace("</Flow>", """    <decisions>
        <name>Fulfil</name>
        <defaultConnectorLabel>Default</defaultConnectorLabel>
    </decisions>
</Flow>""")
    report, doc = imported(tmp_path, text)
    assert [s["name"] for s in doc["stages"]] == ["fulfil"]
    assert [(u.construct, u.line) for u in report.untranslated] == [
        ("decision Fulfil", line_of(text, "<decisions>"))]
    assert valid(tmp_path) == []


def test_a_duplicate_reached_later_is_one_stage(tmp_path: Path) -> None:
    """The first stage goes to the one named twice: that one is translated once."""
    text = ORDER.replace("""    </orchestratedStages>
</Flow>""", """        <connector><targetReference>Ship</targetReference></connector>
    </orchestratedStages>
    <orchestratedStages><name>Ship</name><label>Ship</label>
        """ + background("Ship_It", "Ship_It") + """
    </orchestratedStages>
    <orchestratedStages><name>Ship</name><label>Ship</label>
        """ + background("Ship_Other", "Ship_Other") + """
    </orchestratedStages>
</Flow>""")
    report, doc = imported(tmp_path, text)
    assert [s["name"] for s in doc["stages"]] == ["fulfil", "ship"]
    assert [s["name"] for s in doc["stages"][1]["steps"]] == ["ship_it"]
    assert [u.construct for u in report.untranslated] == ["stage Ship"]
    assert valid(tmp_path) == []


def test_names_that_read_alike_get_distinct_baton_names_with_a_note(tmp_path: Path) -> None:
    text = ORDER.replace("""    </orchestratedStages>
</Flow>""", """        <connector><targetReference>fulfil</targetReference></connector>
    </orchestratedStages>
    <orchestratedStages><name>fulfil</name><label>fulfil</label>
        """ + background("ReserveStock", "Reserve_Alike") + """
        <connector><targetReference>End</targetReference></connector>
    </orchestratedStages>
    <orchestratedStages><name>End</name><label>End</label>
        <connector><targetReference>End_Stage</targetReference></connector>
    </orchestratedStages>
    <orchestratedStages><name>End_Stage</name><label>End stage</label></orchestratedStages>
</Flow>""")
    report, doc = imported(tmp_path, text)
    assert report.untranslated == []
    stages = doc["stages"]
    assert [(s["name"], s["next"][0]["goto"]) for s in stages] == [
        ("fulfil", "fulfil_2"), ("fulfil_2", "end_stage"), ("end_stage", "end_stage_2"),
        ("end_stage_2", "end")]
    assert [s["name"] for s in stages[1]["steps"]] == ["reserve_stock_2"]
    notes = {n.construct: n.reason for n in report.notes}
    assert notes["stage fulfil"].startswith("named fulfil_2: fulfil is the Baton name of "
                                            "stage Fulfil (line ")
    assert notes["step ReserveStock"].startswith("named reserve_stock_2: reserve_stock is "
                                                 "the Baton name of step Reserve_Stock")
    assert "stage End_Stage" in notes
    assert valid(tmp_path) == []


def test_distinct_names_take_no_name_another_element_has() -> None:
    assert distinct(["A", "a", "A_2", "b"], ident) == {"A": "a", "a": "a_3", "A_2": "a_2",
                                                        "b": "b"}
    assert distinct(["End", "end_stage"], stage_name) == {"End": "end_stage",
                                                          "end_stage": "end_stage_2"}


# ---- files that are not flow metadata --------------------------------------------------------
def test_when_no_file_is_readable_the_error_says_why_for_each(tmp_path: Path) -> None:
    files = {
        "trunc": "".join(ORDER.splitlines(True)[:40]),
        "empty": "",
        "hello": "hello world",
        "doctype": '<?xml version="1.0"?>\n<!DOCTYPE Flow SYSTEM "x">\n<Flow/>',
        "other": "<?xml version='1.0'?>\n<CustomObject/>",
    }
    paths = []
    for name, text in files.items():
        paths.append(tmp_path / f"{name}.flow-meta.xml")
        paths[-1].write_text(text)
    with pytest.raises(BatonError) as exc:
        import_salesforce(paths, tmp_path / "out")
    lines = str(exc.value).splitlines()
    assert lines[0] == "nothing imported: 5 files could not be read"
    assert lines[1:] == [
        f"{paths[0]}:41: not well-formed XML: no element found",
        f"{paths[1]}:1: not well-formed XML: no element found",
        f"{paths[2]}:1: not well-formed XML: syntax error",
        (f"{paths[3]}:2: a DOCTYPE (DTD or entity declarations) is not allowed in "
         "flow metadata"),
        f"{paths[4]}:2: not Flow metadata: the root element is <CustomObject>, not <Flow>",
    ]
    assert not (tmp_path / "out").exists()


def test_a_file_that_cannot_be_read_is_reported(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    good, locked = tmp_path / "Order.flow-meta.xml", tmp_path / "Locked.flow-meta.xml"
    good.write_text(ORDER)
    locked.write_text(ORDER)
    real = Path.open

    def open_(self: Path, *args: Any, **kwargs: Any) -> Any:  # (chmod 000 does not stop root)
        if self.name == locked.name:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    report = import_salesforce([good, locked], tmp_path / "out")
    assert report.orchestrations == ["order"]
    assert [(u.file, u.line, u.reason) for u in report.untranslated] == [
        (str(locked), 1, "cannot read it: Permission denied")]


# ---- --out -------------------------------------------------------------------------------------
def test_out_must_be_a_folder_that_can_be_made(tmp_path: Path) -> None:
    src = tmp_path / "Order.flow-meta.xml"
    src.write_text(ORDER)
    a_file = tmp_path / "afile"
    a_file.write_text("mine")
    with pytest.raises(BatonError, match=r"afile: not a folder \(--out names the project"):
        import_salesforce([src], a_file)
    assert a_file.read_text() == "mine"
    with pytest.raises(BatonError, match=r"afile/below/definitions: cannot make the "
                                         r"folder: Not a directory"):
        import_salesforce([src], a_file / "below")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "definitions").write_text("a file where the folder goes")
    with pytest.raises(BatonError, match=r"used/definitions: cannot make the folder: "):
        import_salesforce([src], tmp_path / "used", force=True)
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["definitions"]


def test_a_failed_write_leaves_nothing_written(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "Order.flow-meta.xml"
    src.write_text(ORDER)
    real = Path.write_text
    calls: list[Path] = []

    def failing(self: Path, *args: Any, **kwargs: Any) -> int:
        calls.append(self)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(BatonError, match=r"flows\.py: cannot write it: No space left"):
        import_salesforce([src], tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()
