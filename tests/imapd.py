"""A small IMAP4rev1 server for tests, on loopback (port 0), speaking what a poller needs:
CAPABILITY, LOGIN, SELECT/EXAMINE (with UIDVALIDITY), UID SEARCH with UID ranges (``N:*``
as RFC 3501 reads it: the highest UID is always in it), UID FETCH ``BODY.PEEK[]`` or
``RFC822.SIZE``, NOOP, LOGOUT. Messages are added and the folder recreated (a new UIDVALIDITY) by the test. It
counts the messages it served, so a test sees what a poll fetched.

(Debian's dovecot-imapd needs root and a system user set up to run; this server lets the
test control UIDVALIDITY and expunges, which a real server would make hard to provoke.)"""

from __future__ import annotations

import re
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Self


@dataclass
class Folder:
    uidvalidity: int = 1000
    next_uid: int = 1
    messages: dict[int, bytes] = field(default_factory=dict)


class ImapServer:
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self.folder = Folder()
        self.lock = threading.Lock()
        self.fetched: list[int] = []  # UIDs served by FETCH, in order
        self.logins = 0
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                server._session(self)

        self._tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._tcp.daemon_threads = True
        self.port = int(self._tcp.server_address[1])
        self._thread = threading.Thread(target=self._tcp.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._tcp.shutdown()
        self._tcp.server_close()

    def add(self, raw: bytes) -> int:
        with self.lock:
            uid = self.folder.next_uid
            self.folder.next_uid += 1
            self.folder.messages[uid] = raw
            return uid

    def expunge(self, uid: int) -> None:
        with self.lock:
            del self.folder.messages[uid]

    def recreate(self, uidvalidity: int) -> None:
        """The folder deleted and made again: same messages, new UIDs from 1."""
        with self.lock:
            old = [self.folder.messages[u] for u in sorted(self.folder.messages)]
            self.folder = Folder(uidvalidity, 1, {})
        for raw in old:
            self.add(raw)

    # ---- the protocol -------------------------------------------------------------------
    def _session(self, h: socketserver.StreamRequestHandler) -> None:
        def send(line: str | bytes) -> None:
            h.wfile.write(line if isinstance(line, bytes) else line.encode())

        send("* OK [CAPABILITY IMAP4rev1] test server ready\r\n")
        authed = False
        while True:
            line = h.rfile.readline()
            if not line:
                return
            parts = _tokens(line.decode().rstrip("\r\n"))
            if len(parts) < 2:
                send("* BAD no command\r\n")
                continue
            tag, command, args = parts[0], parts[1].upper(), parts[2:]
            if command == "CAPABILITY":
                send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")
            elif command == "NOOP":
                send(f"{tag} OK done\r\n")
            elif command == "LOGOUT":
                send(f"* BYE bye\r\n{tag} OK done\r\n")
                return
            elif command == "LOGIN":
                if args == [self.username, self.password]:
                    authed = True
                    self.logins += 1
                    send(f"{tag} OK [CAPABILITY IMAP4rev1] logged in\r\n")
                else:
                    send(f"{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n")
            elif not authed:
                send(f"{tag} BAD log in first\r\n")
            elif command in ("SELECT", "EXAMINE"):
                with self.lock:
                    f = self.folder
                    send(f"* {len(f.messages)} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen)\r\n"
                         f"* OK [UIDVALIDITY {f.uidvalidity}] UIDs valid\r\n"
                         f"* OK [UIDNEXT {f.next_uid}] next\r\n"
                         f"{tag} OK [READ-ONLY] {command} done\r\n")
            elif command == "UID" and args and args[0].upper() == "SEARCH":
                with self.lock:
                    uids = sorted(self.folder.messages)
                    wanted = [u for u in uids if _in_set(u, args[-1], max(uids, default=0))]
                send(f"* SEARCH {' '.join(map(str, wanted))}".rstrip() + f"\r\n{tag} OK done\r\n")
            elif command == "UID" and args and args[0].upper() == "FETCH":
                with self.lock:
                    uids = sorted(self.folder.messages)
                    top = max(uids, default=0)
                    for seq, uid in enumerate(uids, start=1):
                        if _in_set(uid, args[1], top):
                            raw = self.folder.messages[uid]
                            if "BODY" not in " ".join(args[2:]).upper():  # RFC822.SIZE
                                send(f"* {seq} FETCH (UID {uid} RFC822.SIZE {len(raw)})\r\n")
                                continue
                            self.fetched.append(uid)
                            send(f"* {seq} FETCH (UID {uid} BODY[] {{{len(raw)}}}\r\n".encode()
                                 + raw + b")\r\n")
                send(f"{tag} OK done\r\n")
            else:
                send(f"{tag} BAD unknown command {command}\r\n")


def _tokens(line: str) -> list[str]:
    return [a if a else b for a, b in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)]


def _in_set(uid: int, spec: str, top: int) -> bool:
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        a = top if lo == "*" else int(lo)
        b = a if not hi else (top if hi == "*" else int(hi))
        if min(a, b) <= uid <= max(a, b):
            return True
    return False
