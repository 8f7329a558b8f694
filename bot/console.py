"""Chat from the app's own terminal: each line typed is a message from the broadcaster.

Example::

    console = ConsoleChat(router)             # reads sys.stdin, prints replies
    task = asyncio.create_task(console.run())

Without Twitch the stream still takes every command: here, in the terminal
that runs `charles-stream`, and from `charles-stream chat` in another one.
Lines are read on a daemon thread (a blocked read must never hold up the
app's shutdown); replies are printed, which the live consoles show above
themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from bot.commands import Router
from bot.messages import ChatMessage, Reply
from bot.permissions import BROADCASTER

CONSOLE_USER = "console"


class ConsoleChat:
    """Routes lines from `source` as the broadcaster's chat and writes the replies."""

    def __init__(
        self,
        router: Router,
        *,
        source: TextIO | None = None,
        write: Callable[[str], None] = print,
    ) -> None:
        self.router = router
        self._source = source if source is not None else sys.stdin
        self._write = write

    async def run(self) -> None:
        """Answer lines until the source ends (or the task is cancelled)."""
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        reader = threading.Thread(
            target=self._read, args=(loop, lines), name="console-chat", daemon=True
        )
        reader.start()
        while (line := await lines.get()) is not None:
            reply = await self.router.handle(ChatMessage(CONSOLE_USER, line, BROADCASTER))
            if reply is not None:
                self.show(reply)

    def show(self, reply: Reply) -> None:
        """Print a reply or an announcement."""
        self._write(f"chat> {reply.text}")

    def _read(self, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
        try:
            # stdin closed or unreadable: the console chat just ends.
            with contextlib.suppress(OSError, ValueError):
                for line in self._source:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
        finally:
            with contextlib.suppress(RuntimeError):  # the app's loop is already closed
                loop.call_soon_threadsafe(lines.put_nowait, None)
