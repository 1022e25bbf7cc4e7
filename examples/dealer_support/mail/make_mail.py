"""Writes the example's messages (the ``.eml`` files next to this script): dealers writing to
support@dealers.baton.example in English and German, with signatures, quoted history, an
HTML-only message, Latin-1, a PDF invoice, auto-replies, a bounce, a reply to an earlier
message and one message about two dealers. Run it again after editing a text:

    python examples/dealer_support/mail/make_mail.py
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
TO = "Dealer Support <support@dealers.baton.example>"
START = datetime(2026, 11, 30, 7, 40, tzinfo=UTC)


def pdf_with_lines(lines: list[str]) -> bytes:
    """A one-page PDF showing ``lines`` (Helvetica, ASCII), with a correct xref table."""
    text = " ".join(f"({ln.replace('(', '[').replace(')', ']')}) Tj 0 -16 Td" for ln in lines)
    stream = f"BT /F1 11 Tf 72 740 Td {text} ET".encode("latin-1")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
               b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"),
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


# (file stem, From, Subject, body, options)
MESSAGES: list[tuple[str, str, str, str, dict[str, object]]] = [
    # ---- new leads ----------------------------------------------------------------------
    ("01_lead_fleet_en", "Tom Harding <tom.harding@harbourmotors.example>",
     "Quote for 6 Kestrel vans - fleet customer",
     """Hello,

a logistics company from Dover came into the showroom yesterday and wants to buy
six Kestrel Cargo vans for their fleet, delivery in spring. Could you send us a
price offer with the fleet discount so we can put a quote together this week?

Dealer: Harbour Motors, https://harbourmotors.example

Thanks,
Tom Harding
Sales Manager | Harbour Motors Ltd
+44 1304 555 210
""", {}),
    ("02_lead_testdrive_de", "Sabine Roth <s.roth@brenner-gruppe.example>",
     "Probefahrt und Angebot Aurora E-Kombi",
     """Guten Tag,

ein Interessent möchte den neuen Aurora E-Kombi Probe fahren und bittet danach
um ein Angebot mit Leasing über 36 Monate. Können Sie uns ein Vorführfahrzeug
für nächste Woche zusagen?

Händler: Autohaus Brenner, www.autohaus-brenner.example

Mit freundlichen Grüßen
Sabine Roth
Verkauf
Autohaus Brenner GmbH
""", {}),
    ("03_lead_html_only", "Lena Fischer <lena.fischer@sonnberg-automobile.example>",
     "Angebot für Flottenkunden (3 Vantor SUV)",
     """<html><body><p>Hallo Support-Team,</p>
<p>ein Flottenkunde aus Graz interessiert sich für <b>drei Vantor SUV</b> und bittet um ein
Angebot inklusive Wartungspaket. Wir würden gern bis Freitag ein Angebot erstellen.</p>
<p>Viele Grüße<br>Lena Fischer<br>Sonnberg Automobile GmbH<br>
<a href="https://www.sonnberg-automobile.example">www.sonnberg-automobile.example</a></p>
</body></html>""", {"html": True}),
    ("04_lead_prospect_en", "Mia Carter <mia@bayview-solenne.example>",
     "Customer wants to order a Solenne Coupe",
     """Hi there,

we have a prospect who would like to order a Solenne Coupe in red with the
winter package. Can you tell us the current price and delivery date so we can
make him an offer? Our site: https://bayview-solenne.example

Best regards,
Mia Carter
Bayview Solenne
""", {}),
    ("05_lead_latin1_de", "Jürgen Maaß <j.maass@autozentrum-kessler.example>",
     "Anfrage Angebot Solenne Stadtauto",
     """Sehr geehrte Damen und Herren,

ein Kunde interessiert sich für zwei Solenne Stadtautos für seinen Pflegedienst und
möchte ein Angebot mit Überführung. Bitte senden Sie uns die Konditionen.

Autozentrum Kessler, www.kessler-solenne.example

Mit freundlichen Grüßen
Jürgen Maaß
""", {"charset": "iso-8859-1"}),
    # ---- billing ------------------------------------------------------------------------
    ("06_billing_twice_en", "Accounts <accounts@northgate-cars.example>",
     "Invoice INV-2026-4471 charged twice",
     """Hello,

our statement for November shows invoice INV-2026-4471 (parts order, GBP 1,284.50)
debited twice. Please refund the second charge or send us a credit note.

Northgate Cars - https://northgate-cars.example/aurora

Kind regards,
Priya Shah
Accounts, Northgate Cars
""", {}),
    ("07_billing_pdf_de", "Buchhaltung <buchhaltung@autohaus-brenner.example>",
     "Rechnung 2026-0917: Betrag falsch",
     """Guten Tag,

anbei die Rechnung 2026-0917 für die Garantiearbeiten. Der Betrag auf der Rechnung
stimmt nicht: es fehlt die Gutschrift für die Teile, die wir zurückgeschickt haben.
Bitte prüfen Sie die Zahlung und senden Sie uns eine korrigierte Rechnung.

Autohaus Brenner, www.autohaus-brenner.example

Mit freundlichen Grüßen
Petra Wolf
Buchhaltung
""", {"pdf": ("Rechnung-2026-0917.pdf", [
        "Aurora Deutschland Vertrieb - Rechnung 2026-0917",
        "Haendler: Autohaus Brenner GmbH, Haendlernummer D-1001",
        "Garantiearbeiten November 2026: EUR 3.480,00",
        "Gutschrift Rueckware: nicht beruecksichtigt",
        "Zahlbar bis 15.12.2026"])}),
    ("08_billing_bonus_en", "Gary Holt <gary.holt@riversidemotorgroup.example>",
     "Q3 bonus payment missing from statement",
     """Hi,

the Q3 volume bonus for Riverside Vantor has not been paid. Our statement for
October shows the sales but no bonus payment. Could you check the payment?

Dealer website: https://riverside-vantor.example

Regards,
Gary Holt
Finance Director
Riverside Motor Group
riverside-vantor.example | bayview-solenne.example
""", {}),
    ("09_billing_fee_de", "Markus Lind <m.lind@lindqvist-auto.example>",
     "Gebühr auf der Rechnung?",
     """Hallo,

auf unserer letzten Rechnung für das Teilelager ist eine Bearbeitungsgebühr von
45 EUR aufgeführt. Warum wurde diese Gebühr berechnet? Bitte um Gutschrift.

Gruß
Markus Lind
Autohaus Lindqvist
https://www.lindqvist-kestrel.example
""", {}),
    ("10_billing_credit_en", "Sophie Grant <sophie.grant@harbourmotors.example>",
     "Credit note for warranty claim W-88213",
     """Good morning,

we have still not received the credit note for warranty claim W-88213, which was
approved three weeks ago. Could you let us know when the credit will appear on our
account?

Harbour Motors (harbourmotors.example)

Many thanks
Sophie
""", {}),
    # ---- technical ----------------------------------------------------------------------
    ("11_tech_portal_en", "Service Desk <service@bayview-solenne.example>",
     "Cannot log in to the dealer portal",
     """Hello support,

since this morning none of our staff can log in to the dealer portal: the page
shows "error 403" after the password. We cannot order parts or check warranty.

Bayview Solenne, https://bayview-solenne.example

Thanks
Leo Baptiste
Service Manager
""", {}),
    ("12_tech_tester_de", "Werkstatt <werkstatt@sonnberg-automobile.example>",
     "Diagnosegerät Fehler nach Update",
     """Hallo,

seit dem Software-Update von gestern zeigt unser Diagnosegerät bei allen Vantor
Fahrzeugen den Fehler E-214 und bricht die Verbindung ab. Die Werkstatt kann keine
Diagnose mehr durchführen.

Sonnberg Automobile, www.sonnberg-automobile.example

Viele Grüße
Karl Huber
Werkstattleiter
""", {}),
    ("13_tech_fault_en", "Dan Okafor <dan.okafor@northgate-cars.example>",
     "Aurora SUV electrical fault - workshop stuck",
     """Hi team,

a customer's Aurora SUV (VIN ending 44821) has an intermittent electrical fault:
the dashboard goes dark at speed. The workshop has checked the fuses and the
battery and cannot find the cause. Error code U0140 is stored.

Northgate Cars, https://northgate-cars.example/aurora

--
Dan Okafor | Workshop Foreman | Northgate Cars
""", {}),
    ("14_tech_ordering_de", "Teiledienst <teile@autozentrum-kessler.example>",
     "Bestellsystem stürzt ab",
     """Guten Morgen,

das Teile-Bestellsystem stürzt ab, sobald wir eine Bestellung mit mehr als zehn
Positionen absenden. Die Störung besteht seit Montag.

Autozentrum Kessler – www.kessler-solenne.example

Mit freundlichen Grüßen
Teiledienst
""", {}),
    ("15_tech_quoted_en", "Ravi Patel <ravi.patel@riversidemotorgroup.example>",
     "RE: Software update for Vantor infotainment",
     """Hello again,

the software update you sent does not install: the infotainment unit shows
"update failed 0x1F" and restarts. Same problem on two cars at Riverside Vantor
(https://riverside-vantor.example).

Ravi

-----Original Message-----
From: Dealer Support <support@dealers.baton.example>
Sent: Monday, November 23, 2026 10:02
To: Ravi Patel
Subject: Software update for Vantor infotainment

Dear dealer, the update for the infotainment unit is available in the portal.
Kestrel dealers (for example harbourmotors.example) received it last week.
""", {}),
    # ---- cancellations ------------------------------------------------------------------
    ("16_cancel_service_en", "Helen Brooks <helen.brooks@harbourmotors.example>",
     "Cancel diagnostic service subscription",
     """Hello,

we would like to cancel our subscription to the remote diagnostic service at the
end of this year. We rarely use it and it is too expensive for a dealer our size.

Harbour Motors, https://harbourmotors.example

Best regards,
Helen Brooks
Managing Director
""", {}),
    ("17_cancel_contract_de", "Geschäftsleitung <gl@autozentrum-kessler.example>",
     "Kündigung Servicevertrag",
     """Sehr geehrte Damen und Herren,

hiermit kündigen wir den Servicevertrag für das Marketingpaket fristgerecht zum
31.12.2026. Bitte bestätigen Sie uns die Kündigung schriftlich.

Autozentrum Kessler, www.kessler-solenne.example

Mit freundlichen Grüßen
Andreas Kessler
Geschäftsführer
""", {}),
    ("18_cancel_network_en", "Owner <owner@lindqvist-auto.example>",
     "Terminating our Kestrel sales contract",
     """Dear Sir or Madam,

after twenty years we have decided to leave the Kestrel dealer network and to
terminate our sales contract with the notice period of twelve months.

Autohaus Lindqvist, https://www.lindqvist-kestrel.example

Yours faithfully,
Erik Lindqvist
""", {}),
    ("19_cancel_package_de", "Lena Fischer <lena.fischer@sonnberg-automobile.example>",
     "Abonnement kündigen",
     """Hallo,

bitte kündigen Sie unser Abonnement für das Online-Werbepaket zum nächstmöglichen
Termin. Wir brauchen es nicht mehr.

Sonnberg Automobile, www.sonnberg-automobile.example

Danke und Grüße
Lena Fischer
""", {}),
    # ---- privacy requests ---------------------------------------------------------------
    ("20_privacy_access_en", "Claire Dunn <claire.dunn@northgate-cars.example>",
     "GDPR access request from a customer",
     """Hello,

a former customer of Northgate Cars (https://northgate-cars.example/aurora) asks
for a copy of all personal data the manufacturer holds about him, under article 15
GDPR. His request letter is with us. How should we proceed?

Kind regards,
Claire Dunn
Customer Relations
""", {}),
    ("21_privacy_delete_de", "Sabine Roth <s.roth@brenner-gruppe.example>",
     "Löschung personenbezogener Daten",
     """Guten Tag,

eine ehemalige Kundin verlangt die Löschung ihrer personenbezogenen Daten nach
DSGVO und widerruft ihre Einwilligung für Werbung. Bitte löschen Sie ihre Daten
auch in Ihren Systemen.

Autohaus Brenner, www.autohaus-brenner.example

Mit freundlichen Grüßen
Sabine Roth
""", {}),
    ("22_privacy_consent_en", "Mia Carter <mia@bayview-solenne.example>",
     "Customer withdraws consent - erase data",
     """Hi,

a customer has written to us withdrawing his consent to marketing e-mails and asks
that his personal data be erased from the brand's CRM as well.

Bayview Solenne, https://bayview-solenne.example

Thanks,
Mia
""", {}),
    # ---- signatures and quotes must not decide the dealer -------------------------------
    ("23_signature_group_en", "Gary Holt <gary.holt@riversidemotorgroup.example>",
     "Invoice for Bayview demo cars",
     """Hi,

the invoice for the three demonstrator cars at https://bayview-solenne.example
was charged twice. Please send a credit note for the duplicate.

Thanks,
Gary Holt
Finance Director
Riverside Motor Group
riverside-vantor.example | northgate-cars.example
""", {}),
    ("24_forward_quote_de", "Karl Huber <werkstatt@sonnberg-automobile.example>",
     "AW: Rückruf Software",
     """Hallo,

bei uns (www.sonnberg-automobile.example) tritt derselbe Fehler auf: das
Diagnosegerät meldet nach dem Update einen Fehler und bricht ab.

Gruß Karl

Am 27.11.2026 um 14:10 schrieb Dealer Support <support@dealers.baton.example>:
> Sehr geehrte Händler, das Autohaus Brenner (www.autohaus-brenner.example)
> meldet einen Fehler im Diagnosegerät nach dem Update.
""", {}),
    ("25_name_only_en", "Tom Harding <tom.harding@harbourmotors.example>",
     "Quote request: Kestrel estate for a taxi company",
     """Hello,

a taxi company wants a quote for four Kestrel estate cars with the taxi package.
Could you send us an offer?

Tom Harding
Harbour Motors Ltd
https://harbourmotors.example
""", {}),
    # ---- two dealers in one message (case splitting will take this one) -----------------
    ("26_two_dealers_en", "Gary Holt <gary.holt@riversidemotorgroup.example>",
     "Portal login broken at two of our dealerships",
     """Hello,

since the weekend nobody at Riverside Vantor (https://riverside-vantor.example) and
Bayview Solenne (https://bayview-solenne.example) can log in to the dealer portal:
"error 403" after the password. Both sites are blocked from ordering parts.

Regards,
Gary Holt
Riverside Motor Group
""", {}),
    # ---- no dealer found ----------------------------------------------------------------
    ("27_unknown_dealer_en", "Jo Miller <jo.miller@gmail.com>",
     "Question about my car's invoice",
     """Hello,

I bought a used car last month and the invoice from the dealer shows a fee I do
not understand. Can you explain why it was charged?

Jo Miller
Sent from my phone
""", {}),
    # ---- a reply to message 11: it goes onto that case, no new case ---------------------
    ("28_reply_portal_en", "Leo Baptiste <service@bayview-solenne.example>",
     "Re: Cannot log in to the dealer portal",
     """Update: two of our staff can log in again, the others still get error 403.

Leo

On Mon, 30 Nov 2026 at 08:30, Service Desk <service@bayview-solenne.example> wrote:
> since this morning none of our staff can log in to the dealer portal
""", {"reply_to": "11_tech_portal_en"}),
    # ---- automatic mail: kept, no case --------------------------------------------------
    ("29_out_of_office_de", "Andreas Kessler <gl@autozentrum-kessler.example>",
     "Abwesenheitsnotiz: Ihre Nachricht",
     """Ich bin bis 07.12.2026 nicht im Büro. In dringenden Fällen wenden Sie sich bitte
an unseren Teiledienst.
""", {"headers": {"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"}}),
    ("30_auto_reply_en", "Harbour Motors <info@harbourmotors.example>",
     "Automatic reply: Your enquiry",
     """Thank you for your e-mail. This mailbox is not monitored at the weekend; we will
reply on Monday.
""", {"headers": {"Auto-Submitted": "auto-replied", "Precedence": "auto_reply"}}),
    ("31_bounce", "Mail Delivery System <MAILER-DAEMON@mx.bayview-solenne.example>",
     "Undelivered Mail Returned to Sender",
     """This is the mail system at host mx.bayview-solenne.example.

I'm sorry to have to inform you that your message could not be delivered to one
or more recipients.

<old.colleague@bayview-solenne.example>: host mx said: 550 5.1.1 user unknown
""", {"headers": {"Auto-Submitted": "auto-generated"}}),
]


def message_id(stem: str) -> str:
    return f"<{stem}@dealers-demo.baton.example>"


def build(i: int, stem: str, sender: str, subject: str, body: str,
          opts: dict[str, object]) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = TO
    msg["Subject"] = subject
    msg["Date"] = format_datetime(START + timedelta(minutes=7 * i))
    msg["Message-ID"] = message_id(stem)
    if opts.get("reply_to"):
        parent = message_id(str(opts["reply_to"]))
        msg["In-Reply-To"] = parent
        msg["References"] = parent
    for name, value in dict(opts.get("headers") or {}).items():  # type: ignore[call-overload]
        msg[name] = value
    if opts.get("html"):
        msg.set_content(body, subtype="html", charset="utf-8")
    else:
        msg.set_content(body, charset=str(opts.get("charset", "utf-8")))
    if opts.get("pdf"):
        name, lines = opts["pdf"]  # type: ignore[misc]
        msg.add_attachment(pdf_with_lines(list(lines)), maintype="application",
                           subtype="pdf", filename=name)
    return bytes(msg)


def main() -> None:
    for old in HERE.glob("*.eml"):
        old.unlink()
    for i, (stem, sender, subject, body, opts) in enumerate(MESSAGES):
        (HERE / f"{stem}.eml").write_bytes(build(i, stem, sender, subject, body, opts))
    print(f"wrote {len(MESSAGES)} messages to {HERE}")


if __name__ == "__main__":
    main()
