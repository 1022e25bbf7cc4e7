"""``baton demo``'s dealer-support part, end to end: the 31 messages of
examples/dealer_support/mail go through the real SMTP listener (an smtplib client on
loopback), the offline AI classifies the intent and matches the dealer account, the rules
route each case to its brand pod's team, where a routing rule gives it to an agent by
skills and capacity as the agents come online, and the outcome table, the routing and one
case's rationale are printed; ``baton records timeline`` shows the same rationale. One subprocess run of the
demo with the other examples at 0 and without order_fulfillment and mcp_erp (the orders,
whose carrier retry waits ~10 s, and the leads are tests/e2e/test_cli.py's demo test's;
the AI part trains one small classifier: a few seconds of CPU, longer on a loaded
machine)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.test_cli import EXAMPLES, baton, examples_without, ok


def row(out: str, message: str) -> list[str]:
    """The outcome table's cells for one message (its file name)."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] == message:
            return cells
    raise AssertionError(f"no row for {message}:\n{out}")


def test_dealer_mail_over_smtp_is_classified_matched_and_routed(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    examples = examples_without(tmp_path, "order_fulfillment", "mcp_erp")
    p = ok(baton("demo", "--db-file", db, "--examples", examples, "--cases", "0",
                 "--requests", "0", "--leads", "0", cwd=tmp_path, timeout=600))
    out = p.stdout
    assert "Dealer support: the messages sent over SMTP" in out, out
    # message, smtp answer, intent, confidence, dealer, queue, stage
    expected = {
        "01_lead_fleet_en": ("new_lead", "Harbour Motors Ltd", "pod_north_sales", "handle"),
        "03_lead_html_only": ("new_lead", "Sonnberg Automobile GmbH", "pod_south_sales", "handle"),
        "05_lead_latin1_de": ("new_lead", "Autozentrum Kessler", "pod_south_sales", "handle"),
        "07_billing_pdf_de": ("billing", "Autohaus Brenner GmbH", "pod_north_billing", "handle"),
        "12_tech_tester_de": ("technical", "Sonnberg Automobile GmbH", "pod_south_technical",
                              "handle"),
        "16_cancel_service_en": ("cancellation", "Harbour Motors Ltd", "pod_north_retention",
                                 "retention"),
        "17_cancel_contract_de": ("cancellation", "Autozentrum Kessler",
                                  "pod_south_retention", "retention"),
        "21_privacy_delete_de": ("privacy_request", "Autohaus Brenner GmbH",
                                 "pod_north_privacy", "handle"),
        # the signature lists two other dealers' sites: the text's own URL decides
        "23_signature_group_en": ("billing", "Bayview Solenne", "pod_south_billing", "handle"),
        # the quoted message names another dealer: the new text's decides
        "24_forward_quote_de": ("technical", "Sonnberg Automobile GmbH",
                                "pod_south_technical", "handle"),
    }
    for message, (intent, dealer, queue, stage) in expected.items():
        cells = row(out, message)
        assert cells[1] == "created" and cells[2] == intent, cells
        assert cells[4] == dealer and cells[5] == queue and cells[6] == stage, cells
        assert 0 < float(cells[3]) <= 1, cells
    # two dealers in one message: one child case per dealer, each routed to its pod (both
    # dealers are in pod_south); the message's case waits for them in several_dealers
    assert row(out, "26_two_dealers_en")[2] == "technical", row(out, "26_two_dealers_en")
    assert row(out, "26_two_dealers_en")[4:7] == ["2 dealers", "split", "several_dealers"]
    children = sorted(cells[4:7] for cells in (
        [c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines())
        if cells and cells[0] == "↳ 26_two_dealers_en")
    assert children == [["Bayview Solenne", "pod_south_technical", "handle"],
                        ["Riverside Vantor", "pod_south_technical", "handle"]], out
    # a private sender naming no dealer: a dispatcher
    assert row(out, "27_unknown_dealer_en")[4:7] == ["none found", "dispatch", "dispatch"]
    # a reply goes onto its case; automatic mail makes none
    assert row(out, "28_reply_portal_en")[1] == "threaded"
    for message in ("29_out_of_office_de", "30_auto_reply_en", "31_bounce"):
        assert row(out, message)[1] == "ignored", row(out, message)
    intents = {"lead": "new_lead", "billing": "billing", "tech": "technical",
               "cancel": "cancellation", "privacy": "privacy_request"}
    single = [f"{n:02d}" for n in range(1, 23)]  # 01-22: one intent each, in the file name
    mails = sorted((EXAMPLES / "dealer_support" / "mail").glob("*.eml"))
    correct = sum(row(out, f.stem)[2] == intents[f.stem.split("_")[1]]
                  for f in mails if f.stem[:2] in single)
    assert correct >= 20, out  # of the 22 single-intent messages 01-22

    # the AI's reasons, as the timeline holds them
    why = re.search(r"decisions on case (rec_\w+) \(23_signature_group_en\)", out)
    assert why, out
    assert re.search(r"intent #1 classified: billing \(0\.\d\d\) because .*invoice", out), out
    assert re.search(r"dealer #1 matched: rec_\w+ \(1\.00\) because website "
                     r"'https://bayview-solenne\.example' ~ 'bayview-solenne\.example'", out), out
    assert "prompt " in out and "offline/baton-offline" in out, out
    # every case ended once the agents answered (retention kept one cancellation in two)
    assert re.search(r"\((2[0-9]) of \1 runs completed\)", out), out
    assert re.search(r"Retained\s*│\s*cancellation", out), out

    # routing (issue 15 item 6): half the agents online first, so cases wait for routing;
    # the rest come online and take them; the explained case's routing reasons
    waves = re.search(r"Routing with 4 of 8 agents online \((\d+) cases wait for routing\)", out)
    assert waves and int(waves.group(1)) > 0, out
    assert "Routing once all 8 agents are online" in out, out
    assert re.search(r"answer → (sofia|sara) \(rule pod_agents; least_loaded;", out), out
    assert "skill missing: pod:pod_south" in out, out

    timeline = ok(baton("--db", db, "records", "timeline", why.group(1), cwd=tmp_path)).stdout
    assert "classified: billing" in timeline and "bayview-solenne.example" in timeline, timeline
