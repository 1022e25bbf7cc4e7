"""IMAP polling: a mailbox with ``imap:`` has its folder read for new mail, every ``every``
seconds, by ``baton serve`` and ``baton worker`` (:class:`ImapPolling`).

**UID tracking**: the folder's ``UIDVALIDITY`` and the last UID taken are kept per mailbox in
the database (``baton_imap_state``). A poll asks only for UIDs above the last one, takes each
message through :meth:`~baton.intake.service.IntakeService.accept` in UID order and records
its UID once it is stored, so no message is fetched again. When the server's UIDVALIDITY
changes (the folder was recreated: its UIDs mean other messages now), the folder is read
from the start; messages taken before are then recognised by their Message-ID and change
nothing. A crash between storing a message and recording its UID is covered the same way.
A message intake will never take (not an e-mail, a record its object type refuses: see
:data:`~baton.intake.service.REFUSED`) is logged and gone past (outcome ``unreadable`` or
``refused``), so it does not hold up the messages after it. So is a message that fails for
a reason of its own (outcome ``failed``, logged as an error with its UID, folder and
traceback): the database refusing the values it holds, or an unexpected error (a bug met on
its content), which taking it again would meet again: it stays in the folder (read-only)
and can be imported with ``baton intake eml --mailbox NAME`` once that is mended. A failure
that is not the message's (the database locked or away, its schema, the mailbox gone) ends
the poll before its UID is recorded, the log naming it, and the next poll takes it again:
going past would lose every message until it is mended. A message larger than the intake
setting ``max_message_bytes`` (``BATON_INTAKE_MAX_MESSAGE_BYTES``, 25 MiB by
default; its ``RFC822.SIZE``, asked first) is not fetched at all (outcome ``too_large``), and
each FETCH asks for at most :data:`FETCH_BYTES` of messages (a larger message alone).
The folder is opened read-only: Baton never marks, moves or deletes mail.

**Refusals are kept**: each message gone past (``unreadable``, ``refused``, ``failed``,
``too_large``) is recorded with its folder, UIDVALIDITY and UID
(:meth:`~baton.intake.service.IntakeService.note_refusal`; a message not fetched with
what its ``ENVELOPE`` says of it), so ``baton intake refused`` lists it; once its cause is
mended, :func:`fetch_one` (``baton intake imap-fetch --mailbox NAME --uid UID``) takes
that one message again.

**Which mailboxes**: :class:`ImapPolling` reads the deployed mailboxes when a poll is due,
and at least every :data:`LOOK_EVERY` seconds otherwise: while no mailbox has an ``imap:``
source, that is all it does (no database read in between), and a deploy that adds one
starts its polling within :data:`LOOK_EVERY` seconds and one ``tick`` (65 s for ``baton
serve`` and ``baton worker``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from baton.clock import iso
from baton.definitions.model import ImapSource, MailboxDefinition
from baton.errors import BatonError
from baton.intake.mail import MailError
from baton.intake.service import REFUSED, Accepted, ImapOrigin, IntakeService

log = logging.getLogger(__name__)
BATCH = 50  # messages fetched per FETCH command
FETCH_BYTES = 32 * 1024 * 1024  # bytes of messages fetched per FETCH command (one at least)
TIMEOUT = 60.0  # seconds for the connection and each command
LOOK_EVERY = 60.0
"""Seconds at most between two reads of the deployed mailboxes by :class:`ImapPolling` (when
no poll is due sooner): how long a deploy that adds an ``imap:`` source may wait."""


class ImapError(BatonError):
    """An IMAP poll could not run (no password, a refused login, a server gone)."""


NEW = ("created", "threaded", "ignored")
"""The outcomes that stored a message (a case, a reply on one, automatic mail kept)."""


@dataclass(frozen=True)
class PollResult:
    mailbox: str
    uidvalidity: int
    taken: tuple[tuple[int, str], ...]  # (UID, outcome) in UID order
    last_uid: int
    reset: bool  # UIDVALIDITY changed: the folder was read from the start

    @property
    def new(self) -> int:
        """How many messages this poll stored (not duplicates, refusals or failures)."""
        return sum(outcome in NEW for _, outcome in self.taken)

    def summary(self) -> str:
        """What the poll did, as its log line says it: the new messages by outcome, then
        the others (``0 new message(s); 12 duplicate`` after a UIDVALIDITY reset)."""
        counts: dict[str, int] = {}
        for _, outcome in self.taken:
            counts[outcome] = counts.get(outcome, 0) + 1
        new = [f"{counts[o]} {o}" for o in NEW if o in counts]
        other = [f"{n} {o}" for o, n in counts.items() if o not in NEW]
        text = f"{self.new} new message(s)" + (f" ({', '.join(new)})" if new else "")
        text += f"; {', '.join(other)}" if other else ""
        if self.reset:
            text += " (UIDVALIDITY changed: the folder was read from the start)"
        return f"{text}, last UID {self.last_uid}"


def password(source: ImapSource, env: Any = None) -> str:
    """The password from ``password_secret`` (``env:NAME``, looked up in ``env``: the
    environment the process was given, ``Settings.secrets_env``); never logged."""
    environ = env if env is not None else {}
    name = source.password_secret.removeprefix("env:")
    value = environ.get(name)
    if not value:
        raise ImapError(f"IMAP password: environment variable {name} is not set "
                        f"(password_secret: {source.password_secret})")
    return str(value)


def poll(intake: IntakeService, box: MailboxDefinition, *, env: Any = None,
         connect: Callable[[ImapSource], Any] | None = None,
         max_bytes: int | None = None) -> PollResult:
    """Take the mailbox's new messages once (``max_bytes``: the largest message taken; None:
    the intake setting, ``intake.limits.max_message_bytes``)."""
    if max_bytes is None:
        max_bytes = intake.limits.max_message_bytes
    with _session(box, env, connect) as (client, source, uidvalidity):
        return _take(intake, box, source, client, uidvalidity, max_bytes)


def fetch_one(intake: IntakeService, box: MailboxDefinition, uid: int, *,
              uidvalidity: int | None = None, env: Any = None,
              connect: Callable[[ImapSource], Any] | None = None,
              max_bytes: int | None = None) -> Accepted:
    """Take the message of ``uid`` in the mailbox's folder again, now (one that a poll went
    past: its cause mended), as a poll takes it; its UID bookkeeping is left as it is.
    ``uidvalidity``: the folder's as the refusal recorded it; another one means the folder
    was recreated and the UID names another message now (an :class:`ImapError`)."""
    if max_bytes is None:
        max_bytes = intake.limits.max_message_bytes
    with _session(box, env, connect) as (client, source, valid):
        if uidvalidity is not None and uidvalidity != valid:
            raise ImapError(f"folder {source.folder!r} of mailbox {box.name!r} has "
                            f"UIDVALIDITY {valid} now, not {uidvalidity}: it was recreated and "
                            f"UID {uid} names another message (save the message as an .eml "
                            "file and import it with `baton intake eml` instead)")
        size = (client.fetch([uid], ["RFC822.SIZE"]).get(uid) or {}).get(b"RFC822.SIZE")
        if size is None:
            raise ImapError(f"folder {source.folder!r} of mailbox {box.name!r} has no "
                            f"message of UID {uid} (expunged, or not yet there)")
        if int(size) > max_bytes:
            raise MailError(f"the message is {int(size):,} bytes: at most {max_bytes:,} are "
                            "taken (the intake setting max_message_bytes)")
        raw = (client.fetch([uid], ["BODY.PEEK[]"]).get(uid) or {}).get(b"BODY[]")
        if not isinstance(raw, bytes):
            raise ImapError(f"UID {uid} of {source.account}: the server sent no message")
        return intake.accept(raw, via="imap", mailbox=box.name, actor=f"imap:{box.name}",
                             max_bytes=max_bytes,
                             origin=ImapOrigin(source.account, source.folder, valid, uid))


@contextmanager
def _session(box: MailboxDefinition, env: Any, connect: Callable[[ImapSource], Any] | None
             ) -> Iterator[tuple[Any, ImapSource, int]]:
    """Logged in to the mailbox's server, its folder selected read-only: the client, the
    source and the folder's UIDVALIDITY; logged out after."""
    source = box.imap
    if source is None:
        raise ImapError(f"mailbox {box.name!r} has no imap: source")
    import imaplib

    from imapclient.exceptions import IMAPClientError

    secret = password(source, env)
    client = (connect or _connect)(source)
    try:
        try:
            client.login(source.username, secret)
        except (IMAPClientError, imaplib.IMAP4.error) as exc:
            raise ImapError(f"IMAP login as {source.username!r} at {source.host} refused: "
                            f"{_clean(exc, secret)}") from None
        selected = client.select_folder(source.folder, readonly=True)
        yield client, source, int(selected[b"UIDVALIDITY"])
    finally:
        try:
            client.logout()
        except (IMAPClientError, imaplib.IMAP4.error, OSError) as exc:
            log.debug("imap %s: logout: %s", box.name, exc)  # a connection already gone


def _take(intake: IntakeService, box: MailboxDefinition, source: ImapSource, client: Any,
          uidvalidity: int, max_bytes: int) -> PollResult:
    store = intake.store
    with store.read() as tx:
        state = tx.imap_state_txn(box.name)
    reset = state is not None and (int(state["uidvalidity"]) != uidvalidity
                                   or state["account"] != source.account)
    last = 0 if state is None or reset else int(state["last_uid"])
    if reset or state is None:
        _save(intake, box, source, uidvalidity, last)
    # "N:*" also answers the last message when its UID is below N: filter.
    uids = sorted(int(u) for u in client.search(["UID", f"{last + 1}:*"]) if int(u) > last)
    sizes: dict[int, int] = {}
    for start in range(0, len(uids), BATCH):
        for uid, data in client.fetch(uids[start:start + BATCH], ["RFC822.SIZE"]).items():
            sizes[int(uid)] = int((data or {}).get(b"RFC822.SIZE") or 0)
    taken: list[tuple[int, str]] = []
    for chunk in _batches(uids, sizes, max_bytes):
        wanted = [u for u in chunk if sizes.get(u, 0) <= max_bytes]
        fetched = client.fetch(wanted, ["BODY.PEEK[]"]) if wanted else {}
        for uid in chunk:
            raw = (fetched.get(uid) or {}).get(b"BODY[]")
            outcome = "missing"  # (expunged between SEARCH and FETCH)
            origin = ImapOrigin(source.account, source.folder, uidvalidity, int(uid))
            if sizes.get(uid, 0) > max_bytes:
                outcome = "too_large"
                log.warning("imap %s: UID %s is %s bytes: at most %s are taken; not fetched",
                            box.name, uid, f"{sizes[uid]:,}", f"{max_bytes:,}")
                intake.note_refusal(
                    "imap", f"the message is {sizes[uid]:,} bytes: at most {max_bytes:,} are "
                    "taken (the intake setting max_message_bytes); it was not fetched",
                    outcome="too_large", head=_envelope(client, int(uid)), size=sizes[uid],
                    mailbox=box.name, origin=origin)
            elif isinstance(raw, bytes):
                outcome = _accept(intake, box, source, origin, raw, max_bytes)
            _save(intake, box, source, uidvalidity, int(uid))
            last = int(uid)
            taken.append((int(uid), outcome))
    return PollResult(box.name, uidvalidity, tuple(taken), last, reset)


def _accept(intake: IntakeService, box: MailboxDefinition, source: ImapSource,
            origin: ImapOrigin, raw: bytes, max_bytes: int) -> str:
    """One message through intake: its outcome. Raises (the poll ends before its UID is
    recorded) only for a failure that is not the message's own (:func:`_its_own`). A
    refusal is recorded by intake; a failure of its own, here."""
    uid = origin.uid
    try:
        return intake.accept(raw, via="imap", mailbox=box.name, actor=f"imap:{box.name}",
                             max_bytes=max_bytes, origin=origin).outcome
    except REFUSED as exc:
        outcome = "unreadable" if isinstance(exc, MailError) else "refused"
        log.warning("imap %s: UID %s is %s: %s", box.name, uid,
                    "not an e-mail intake can read" if outcome == "unreadable"
                    else "refused", exc)
        return outcome
    except Exception as exc:
        if not _its_own(intake, exc):
            log.warning("imap %s: UID %s (%s) not taken now: %s; the next poll takes it "
                        "again", box.name, uid, source.account, _first_line(exc))
            raise
        log.error("imap %s: UID %s (%s) failed: %s: %s. Gone past it, so that the messages "
                  "after it are taken: it stays in the folder; import it with `baton "
                  "intake eml FILE --mailbox %s` once this is mended", box.name, uid,
                  source.account, type(exc).__name__, _first_line(exc), box.name,
                  exc_info=not isinstance(exc, DBAPIError))
        if not intake.store.refuses_data(exc):  # (intake recorded those)
            intake.note_refusal("imap", f"{type(exc).__name__}: {_first_line(exc)}",
                                outcome="failed", raw=raw, mailbox=box.name, origin=origin)
        return "failed"


def _its_own(intake: IntakeService, exc: Exception) -> bool:
    """Whether ``exc`` is this message's own failure, which taking it again would meet
    again while other messages go through: the database refusing the values it holds (a
    value too long for its column…), or an unexpected error (a bug met on its content).
    Not: any other database error (locked, away, a schema's), a Baton error (a definition
    no message satisfies, the mailbox gone), an operating system's error (a disk full):
    every message would fail alike until that is mended."""
    if isinstance(exc, DBAPIError):
        return intake.store.refuses_data(exc)
    return not isinstance(exc, BatonError | OSError | SQLAlchemyError)


def _envelope(client: Any, uid: int) -> bytes | None:
    """What the server's ``ENVELOPE`` says of a message that is not fetched (From, Subject,
    Message-ID, To, Cc) as header lines, for its refusal; None when it says nothing."""
    try:
        env = (client.fetch([uid], ["ENVELOPE"]).get(uid) or {}).get(b"ENVELOPE")
    except Exception as exc:  # noqa: BLE001 - the refusal is recorded without them
        log.debug("imap: ENVELOPE of UID %s: %s", uid, exc)
        return None
    if env is None:
        return None

    def text(value: Any) -> str:
        raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
        return " ".join(raw[:4_000].split())

    def addresses(found: Any) -> str:
        return ", ".join(f"{text(a.mailbox)}@{text(a.host)}" for a in (found or ())
                         if getattr(a, "mailbox", None) and getattr(a, "host", None))

    lines = [("From", addresses(env.from_)), ("Subject", text(env.subject)),
             ("Message-ID", text(env.message_id)), ("To", addresses(env.to)),
             ("Cc", addresses(env.cc))]
    return "".join(f"{k}: {v}\r\n" for k, v in lines if v).encode("utf-8") + b"\r\n"


def _batches(uids: list[int], sizes: dict[int, int], max_bytes: int) -> list[list[int]]:
    """``uids`` in order, in runs of at most :data:`BATCH` messages and :data:`FETCH_BYTES`
    bytes to fetch (a message too large to be fetched counts nothing)."""
    out: list[list[int]] = []
    chunk: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0) if sizes.get(uid, 0) <= max_bytes else 0
        if chunk and (len(chunk) >= BATCH or total + size > FETCH_BYTES):
            out.append(chunk)
            chunk, total = [], 0
        chunk.append(uid)
        total += size
    if chunk:
        out.append(chunk)
    return out


def _save(intake: IntakeService, box: MailboxDefinition, source: ImapSource, uidvalidity: int,
          last_uid: int) -> None:
    with intake.store.write() as tx:
        tx.put_imap_state_txn({"mailbox": box.name, "account": source.account,
                               "uidvalidity": uidvalidity, "last_uid": last_uid,
                               "updated_at": iso(intake.clock.now())})


def _connect(source: ImapSource) -> Any:
    from imapclient import IMAPClient

    return IMAPClient(source.host, port=source.port, ssl=source.ssl, timeout=TIMEOUT)


def _first_line(exc: BaseException) -> str:
    """An error in one line: the driver's message for a database error (never SQLAlchemy's
    statement and parameters), else the error's own."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _clean(exc: BaseException, secret: str) -> str:
    return str(exc).replace(secret, "***")[:300]


class ImapPolling:
    """A daemon thread that polls every mailbox with ``imap:`` at its own pace. A round
    (every ``tick`` seconds) re-reads the deployed mailboxes only when a poll is due or
    :data:`LOOK_EVERY` seconds have passed since it last did (a deploy adds, changes or
    removes sources without a restart, within that time); otherwise it does nothing, so a
    process without IMAP mailboxes reads no definitions for them in between.
    A failing poll, or a round that cannot read the mailboxes (the database away), is
    logged as a warning and tried again at the next round: the thread never ends on it."""

    def __init__(self, intake: IntakeService, *, tick: float = 1.0,
                 monotonic: Callable[[], float] | None = None, env: Any = None) -> None:
        import time

        self.env = env  # where password_secret's env: references are looked up
        self.intake = intake
        self.tick = tick
        self.monotonic = monotonic or time.monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._due: dict[str, float] = {}
        self._look_at: float | None = None  # when to read the mailboxes next (None: now)

    def sources(self) -> Sequence[MailboxDefinition]:
        boxes = self.intake.definitions.mailboxes()
        return [b for b in sorted(boxes.values(), key=lambda b: b.name) if b.imap is not None]

    def round(self) -> None:
        now = self.monotonic()
        if self._look_at is not None and now < self._look_at:
            return  # no poll due, and the mailboxes were read not long ago
        try:
            boxes = self.sources()  # (a database read: the database may be away)
        except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
            log.warning("imap: cannot read the deployed mailboxes: %s", _first_line(exc))
            return
        names = {b.name for b in boxes}
        self._due = {k: v for k, v in self._due.items() if k in names}  # (removed ones)
        for box in boxes:
            assert box.imap is not None
            if self._due.get(box.name, 0.0) > now:
                continue
            self._due[box.name] = now + box.imap.every
            try:
                got = poll(self.intake, box, env=self.env)
                if got.taken:
                    log.info("imap %s: %s", box.name, got.summary())
            except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
                log.warning("imap %s: poll failed: %s", box.name, _first_line(exc))
        # Next read of the mailboxes: when the next poll is due, LOOK_EVERY at the latest.
        self._look_at = min([now + LOOK_EVERY, *self._due.values()])

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.round()
                except Exception:  # a bug: logged, and the thread keeps polling
                    log.exception("imap: polling round failed")
                self._stop.wait(self.tick)

        self._thread = threading.Thread(target=loop, name="baton-imap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
