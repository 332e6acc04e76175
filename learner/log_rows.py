"""Moving the rows of a lost stretch out of a role's JSONL log.

A learner restarted from its checkpoint repeats the steps after it, and a replay restored from its
checkpoint counts the environment steps after it again. The rows those lost stretches left in
logs/<role>.jsonl are moved to logs/lost/<role>.jsonl (kept for the record, read by nothing), so
that in logs/ the learner's step and the curve's x axis never go backwards and no point appears
twice. Only the file's single writer, or the supervisor while that writer is stopped, may do it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def complete_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file that parse (a line cut by a crash is left out)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def set_aside(path: Path, is_lost: Callable[[dict], bool]) -> list[dict]:
    """Move the rows of `path` for which `is_lost` holds to lost/<name> beside it; returns them."""
    rows = complete_rows(path)
    lost = [r for r in rows if is_lost(r)]
    if not lost:
        return []
    lost_dir = path.parent / "lost"
    lost_dir.mkdir(exist_ok=True)
    with open(lost_dir / path.name, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in lost)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if not is_lost(r)))
    os.replace(tmp, path)
    return lost
