"""Every command ``decide`` can emit has exactly one handler in the apply table."""

from __future__ import annotations

import typing

from baton.engine import events
from baton.runtime.apply import HANDLERS


def test_every_command_type_has_a_handler_and_nothing_else_does() -> None:
    commands = set(typing.get_args(events.Command))
    assert commands, "Command is a union of the command types"
    assert set(HANDLERS) == commands
