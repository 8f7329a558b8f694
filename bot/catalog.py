"""The model lines and versions chat can name (`!models`, `!vote`, `!switch`).

Example::

    catalog = ModelCatalog("data")
    models = await catalog.current()     # re-read at most every 10 s
    models.knows("model_0003_xception")  # a line with a spec file, or a registered version

A line is anything with a spec in `models/*.toml` (streaming it creates v1
when it has no version yet); a version is a row of the registry in
`charles.db`. Reading both for every chat line at 1,000 lines a second would
keep SQLite busy for nothing, so the snapshot lives `max_age_s`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from models.registry import Registry
from models.spec import available_lines

MAX_AGE_S = 10.0


@dataclass(frozen=True)
class Models:
    """Lines with a spec file, and the registered versions of each line."""

    lines: tuple[str, ...]
    versions: dict[str, tuple[str, ...]]

    def knows(self, name: str) -> bool:
        """Whether `name` is a line or a registered version."""
        return name in self.lines or any(name in names for names in self.versions.values())


class ModelCatalog:
    """A snapshot of `Models`, re-read when older than `max_age_s` or after `forget`."""

    def __init__(self, data_dir: str | Path, *, max_age_s: float = MAX_AGE_S) -> None:
        self.data_dir = Path(data_dir)
        self.max_age_s = max_age_s
        self._models: Models | None = None
        self._read_at = 0.0

    async def current(self) -> Models:
        """The lines and versions, at most `max_age_s` old."""
        now = asyncio.get_running_loop().time()
        if self._models is None or now - self._read_at > self.max_age_s:
            self._models = await asyncio.to_thread(self._read)
            self._read_at = now
        return self._models

    def forget(self) -> None:
        """Re-read on the next call (a switch may have created a version)."""
        self._models = None

    def _read(self) -> Models:
        with Registry(self.data_dir) as registry:
            versions = registry.versions()
        by_line: dict[str, list[str]] = {}
        for version in versions:
            by_line.setdefault(version.line, []).append(version.name)
        return Models(
            lines=tuple(available_lines()),
            versions={line: tuple(names) for line, names in by_line.items()},
        )
