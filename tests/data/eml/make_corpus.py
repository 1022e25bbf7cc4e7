"""Writes the .eml corpus of tests/integration/test_mail_parsing.py (run once; the files are
committed). Each message is built the way a mail client sends it, with the standard library
or as raw text where a client's quirks matter (encoded words, charsets, Outlook headers)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).parent
DATE = format_datetime(datetime(2026, 11, 3, 9, 15, tzinfo=UTC))


def msg(subject: str, body: str, *, sender: str = "Ann Silva <ann@dealer-one.example>",
        to: str = "support@baton.example", msgid: str | None = "m@x", **headers: str
        ) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Date"] = sender, to, subject, DATE
    if msgid:
        m["Message-ID"] = f"<{msgid}>"
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body)
    return m


def write(name: str, m: EmailMessage | str | bytes) -> None:
    data = m if isinstance(m, bytes) else (m.encode() if isinstance(m, str) else bytes(m))
    (HERE / f"{name}.eml").write_bytes(data)


write("01_plain", msg("Invoice 4411 charged twice", "Hello,\n\nmy invoice 4411 was charged twice on 2 Nov.\nPlease refund one of them.\n\nThanks,\nAnn", msgid="01@dealer-one.example"))
write("02_utf8_encoded_subject", msg("Pedido urgente: cartão bloqueado ✓", "Olá,\n\no meu cartão foi bloqueado ontem à noite.\n", msgid="02@x.example"))
write("03_latin1", (
    "From: =?ISO-8859-1?Q?Jo=E3o_Concei=E7=E3o?= <joao@concessionaria.example>\r\n"
    "To: support@baton.example\r\nSubject: =?ISO-8859-1?Q?Fatura_n=E3o_recebida?=\r\n"
    f"Date: {DATE}\r\nMessage-ID: <03@concessionaria.example>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    "Bom dia,\r\n\r\nN=E3o recebi a fatura de outubro. Poderiam reenvi=E1-la?\r\n\r\nAtenciosamente,\r\nJo=E3o\r\n"
).encode("ascii"))
alt = msg("Dashboard error", "The dashboard shows error 500 since this morning.", msgid="04@dealer-two.example")
alt.add_alternative("<html><body><p>The dashboard shows <b>error 500</b> since this morning (HTML).</p></body></html>", subtype="html")
write("04_alternative_prefers_text", alt)
html = EmailMessage()
html["From"], html["To"], html["Subject"], html["Date"], html["Message-ID"] = (
    "Bob <bob@dealer-two.example>", "support@baton.example", "Cannot log in", DATE, "<05@dealer-two.example>")
html.set_content("<html><head><style>p{color:red}</style><script>alert(1)</script></head><body><div>I cannot log in to the portal.</div><div>The reset link is broken.</div><ul><li>Chrome</li><li>Firefox</li></ul></body></html>", subtype="html")
write("05_html_only", html)
html2 = EmailMessage()
html2["From"], html2["To"], html2["Subject"], html2["Date"], html2["Message-ID"] = (
    "Bob <bob@dealer-two.example>", "support@baton.example", "Re: Cannot log in", DATE, "<06@dealer-two.example>")
html2["In-Reply-To"] = "<05@dealer-two.example>"
html2.set_content("<div>Still broken today.</div><blockquote><div>I cannot log in to the portal.</div></blockquote>", subtype="html")
write("06_html_reply_blockquote", html2)
write("07_reply_on_wrote", msg("Re: Invoice 4411 charged twice", "Any news on this? It has been a week.\n\nOn Mon, 3 Nov 2026 at 09:15, Support <support@baton.example> wrote:\n> We are looking into it.\n>\n> Regards, Support", msgid="07@dealer-one.example", In_Reply_To="<01-answer@baton.example>", References="<01@dealer-one.example> <01-answer@baton.example>"))
write("08_reply_portuguese", msg("Re: Fatura não recebida", "Obrigado, recebi.\n\nEm seg., 3 de nov. de 2026 às 10:00, Suporte <support@baton.example> escreveu:\n> Segue a fatura em anexo.", sender="João <joao@concessionaria.example>", msgid="08@concessionaria.example", In_Reply_To="<03-answer@baton.example>"))
write("09_outlook_from_sent", msg("RE: Contract renewal", "Please go ahead with the renewal.\n\nFrom: Support <support@baton.example>\nSent: Monday, November 3, 2026 10:00 AM\nTo: Carla <carla@dealer-three.example>\nSubject: Contract renewal\n\nShall we renew?", sender="Carla <carla@dealer-three.example>", msgid="09@dealer-three.example"))
write("10_original_message", msg("FW: Warranty claim", "See the claim below, can you check it?\n\n-----Original Message-----\nFrom: customer@home.example\nSubject: Warranty claim\n\nMy car's window does not close.", sender="Carla <carla@dealer-three.example>", msgid="10@dealer-three.example"))
write("11_signature_dashes", msg("Parts order 7781", "Please confirm parts order 7781 ships this week.\n\n-- \nDan Moreau\nParts Manager, Garage Moreau\nhttps://garage-moreau.example\n+33 1 23 45 67 89", sender="Dan <dan@garage-moreau.example>", msgid="11@garage-moreau.example"))
write("12_sent_from_iphone", msg("Cancel my subscription", "I want to cancel my subscription at the end of the month.\n\nSent from my iPhone", msgid="12@dealer-one.example"))
write("13_closing_regards", msg("Billing address change", "Please update our billing address to 12 Rue Neuve, Lyon.\n\nBest regards,\nEve Martin\nACME Motors\nwww.acme-motors.example", sender="Eve <eve@acme-motors.example>", msgid="13@acme-motors.example"))
write("14_auto_submitted", msg("Automatic reply: Invoice 4411", "I am out of the office until Monday.", msgid="14@x.example", Auto_Submitted="auto-replied"))
write("15_x_autoreply", msg("Re: your request", "Thank you for your mail, we will answer soon.", msgid="15@x.example", X_Autoreply="yes"))
write("16_precedence_bulk", msg("Newsletter November", "Our November offers ...", msgid="16@news.example", Precedence="bulk"))
bounce = (
    "From: Mail Delivery System <MAILER-DAEMON@mx.baton.example>\r\nTo: support@baton.example\r\n"
    f"Subject: Undelivered Mail Returned to Sender\r\nDate: {DATE}\r\nMessage-ID: <17@mx.baton.example>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
    "--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system. Your message could not be delivered.\r\n"
    "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.baton.example\r\n\r\nFinal-Recipient: rfc822; nobody@dealer-one.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "--b--\r\n")
write("17_bounce_report", bounce)
write("18_mailer_daemon", msg("Delivery failure", "Message not delivered.", sender="postmaster@dealer-two.example", msgid="18@x.example"))
write("19_out_of_office_subject", msg("Out of Office: Parts order 7781", "I will be back on 10 November.", msgid="19@x.example"))
pdf = msg("Claim with invoice", "The invoice for the claim is attached.", msgid="20@dealer-one.example")
pdf.add_attachment(b"%PDF-1.4\n% a tiny placeholder\n", maintype="application", subtype="pdf", filename="invoice-4411.pdf")
write("20_pdf_attachment", pdf)
uni = msg("Documentos", "Seguem os documentos.", msgid="21@concessionaria.example", sender="João <joao@concessionaria.example>")
uni.add_attachment("Relatório de peças\n".encode(), maintype="text", subtype="plain", filename="relatório ção.txt")
write("21_attachment_rfc2231_name", uni)
two = msg("Photos of the damage", "Two photos and the report.", msgid="22@dealer-two.example")
two.add_attachment(b"\x89PNG\r\n\x1a\nfake", maintype="image", subtype="png", filename="front.png")
two.add_attachment(b"\xff\xd8\xff\xe0fake", maintype="image", subtype="jpeg", filename="../../etc/back.jpg")
write("22_two_attachments_unsafe_name", two)
write("23_thread_start", msg("Order 9001 delayed", "Order 9001 was due yesterday and has not arrived.", msgid="thread-1@dealer-four.example", sender="Finn <finn@dealer-four.example>"))
write("24_thread_reply_1", msg("Re: Order 9001 delayed", "Still nothing today.", msgid="thread-2@dealer-four.example", sender="Finn <finn@dealer-four.example>", In_Reply_To="<thread-1@dealer-four.example>", References="<thread-1@dealer-four.example>"))
write("25_thread_reply_2", msg("Re: Order 9001 delayed", "The carrier says it is lost.", msgid="thread-3@dealer-four.example", sender="Finn <finn@dealer-four.example>", In_Reply_To="<thread-2@dealer-four.example>", References="<thread-1@dealer-four.example> <thread-2@dealer-four.example>"))
write("26_thread_reply_3_references_only", msg("Re: Order 9001 delayed", "Please send a replacement.", msgid="thread-4@dealer-four.example", sender="Finn <finn@dealer-four.example>", References="<thread-1@dealer-four.example> <thread-2@dealer-four.example> <thread-3@dealer-four.example>"))
write("27_no_message_id", msg("No id", "This message has no Message-ID header.", msgid=None))
write("28_german_reply", msg("AW: Ersatzteile", "Bitte liefern Sie die Teile bis Freitag.\n\nMit freundlichen Grüßen\nKarl Weber\nAutohaus Weber\n\nAm 03.11.2026 um 10:00 schrieb Support <support@baton.example>:\n> Wann brauchen Sie die Teile?", sender="Karl <karl@autohaus-weber.example>", msgid="28@autohaus-weber.example"))
write("29_french_reply", msg("RE: Garantie", "Merci, c'est noté.\n\nCordialement,\nLéa\n\nLe lun. 3 nov. 2026 à 10:00, Support <support@baton.example> a écrit :\n> La garantie couvre la pièce.", sender="Léa <lea@garage-lyon.example>", msgid="29@garage-lyon.example"))
write("30_several_dealers", msg("Billing issue for three dealerships", "Hello,\nthe invoices for our three sites are wrong:\n- https://dealer-one.example/site (account D-1001)\n- dealer-two.example (account D-1002)\n- Garage Moreau, account D-1003\n\nRegards,\nGroup finance", sender="Finance <finance@dealer-group.example>", msgid="30@dealer-group.example"))
b64 = EmailMessage()
b64["From"], b64["To"], b64["Subject"], b64["Date"], b64["Message-ID"] = (
    "Mia <mia@dealer-five.example>", "support@baton.example", "=?UTF-8?B?8J+alyBUZXN0IGRyaXZl?=", DATE, "<31@dealer-five.example>")
b64.set_content("Can we book a test drive 🚗 on Friday?\n", charset="utf-8", cte="base64")
write("31_base64_emoji", b64)
write("32_windows_1252", (
    "From: Sam <sam@dealer-six.example>\r\nTo: support@baton.example\r\nSubject: Quote\r\n"
    f"Date: {DATE}\r\nMessage-ID: <32@dealer-six.example>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
).encode("ascii") + "We\u2019d like a quote for \u201cfleet service\u201d \u2013 20 cars.\r\n".encode("cp1252"))
write("33_bad_date", msg("Bad date", "The Date header cannot be read.", msgid="33@x.example").as_string().replace(DATE, "sometime last week"))
empty = msg("Scan", "", msgid="34@dealer-one.example")
empty.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename="scan.pdf")
write("34_attachment_only", empty)
write("35_unknown_charset", (
    "From: Zed <zed@dealer-seven.example>\r\nTo: support@baton.example\r\nSubject: Charset\r\n"
    f"Date: {DATE}\r\nMessage-ID: <35@dealer-seven.example>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nPlain words despite the charset.\r\n").encode("ascii"))
