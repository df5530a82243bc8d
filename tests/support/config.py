"""One way to write a test configuration and numbered input lines.

    write_config(tmp_path / "c.toml", settings={"dead_letter": tmp_path / "dead.ndjson"},
                 sources={"in": {"type": "stdin"}}, exporters={"out": {"destination": "drop"}},
                 metrics={"all": {"filter": "event=e", "exporter": "out"}})

A block is a dict of TOML keys; a key set to None is left out (so a test can take one
out of a file's usual configuration with ``merged``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

Block = Mapping[str, object]


def toml_value(value: object) -> str:
    """``value`` as TOML: a string or path quoted (escaped as JSON is, which TOML reads),
    a bool, a number, or a list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def config_text(
    *,
    settings: Block | None = None,
    sources: Mapping[str, Block] | None = None,
    exporters: Mapping[str, Block] | None = None,
    metrics: Mapping[str, Block] | None = None,
) -> str:
    """The TOML of a configuration: ``[global]`` (``settings``), then a
    ``[source.NAME]``, ``[exporter.NAME]``, ``[metric.NAME]`` block for each entry, in
    order, one key a line, a blank line between blocks."""
    blocks: list[tuple[str, Block]] = []
    if settings is not None:
        blocks.append(("global", settings))
    for kind, named in (("source", sources), ("exporter", exporters), ("metric", metrics)):
        blocks.extend((f"{kind}.{name}", block) for name, block in (named or {}).items())
    return "\n".join(
        f"[{header}]\n"
        + "".join(
            f"{key} = {toml_value(value)}\n" for key, value in block.items() if value is not None
        )
        for header, block in blocks
    )


def write_config(
    path: Path,
    *,
    settings: Block | None = None,
    sources: Mapping[str, Block] | None = None,
    exporters: Mapping[str, Block] | None = None,
    metrics: Mapping[str, Block] | None = None,
) -> Path:
    """``path`` written with :func:`config_text` of these blocks; ``path`` again."""
    text = config_text(settings=settings, sources=sources, exporters=exporters, metrics=metrics)
    path.write_text(text)
    return path


def merged(block: Block, changes: Block | None) -> dict[str, object]:
    """``block`` with ``changes`` over it (a None in ``changes`` takes a key out)."""
    return {**block, **(changes or {})}


def numbered_lines(
    numbers: Iterable[int],
    *,
    event: str = "e",
    form: Literal["json", "tab-text"] = "json",
    digits: int | None = None,
    hostname: str | None = None,
    pad: int = 0,
) -> bytes:
    """One event line per number, with the number as field ``n``: json
    (``{"event":"e","fields":{"n":7}}``) or tab-text (``event:e<TAB>field:n=0000007``).
    ``digits``: ``n`` zero-padded to that many digits (a string in json); ``hostname``
    and ``pad`` (that many ``p`` in a field ``pad``: longer lines), json only."""
    out = bytearray()
    for n in numbers:
        value = str(n) if digits is None else f"{n:0{digits}d}"
        if form == "tab-text":
            out += f"event:{event}\tfield:n={value}\n".encode()
            continue
        fields = value if digits is None else f'"{value}"'
        host = "" if hostname is None else f',"hostname":"{hostname}"'
        filler = f',"pad":"{"p" * pad}"' if pad else ""
        out += f'{{"event":"{event}"{host},"fields":{{"n":{fields}{filler}}}}}\n'.encode()
    return bytes(out)
