"""Reading a samix run folder as plain Python data: `summary.json`, `metrics.jsonl`, `config.toml`.

A run folder is what `samix train`/`pretrain`/`linear` writes (README, "CLI"). Nothing here
imports torch or the extension.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - older Pythons, when tomli is installed
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ImportError:
        _toml = None


@dataclass
class Run:
    """One run folder: its final summary (None while the run has not finished), one dict per
    epoch from metrics.jsonl (per-head accuracies and loss terms under ``"extra"``), and the config
    it ran with."""

    path: Path
    summary: Optional[Dict[str, Any]]
    metrics: List[Dict[str, Any]] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)

    def column(self, key: str) -> List[Any]:
        """One metric per epoch, looked up at the top level, then under ``"extra"``."""
        if not self.metrics:
            return []
        if all(key in m for m in self.metrics):
            return [m[key] for m in self.metrics]
        if all(key in m.get("extra", {}) for m in self.metrics):
            return [m["extra"][key] for m in self.metrics]
        known = sorted(set(self.metrics[-1]) | set(self.metrics[-1].get("extra", {})) - {"extra"})
        raise KeyError(f"{key!r} is not in every epoch of {self.path / 'metrics.jsonl'}; known: {', '.join(known)}")


def read_run(path: Union[str, os.PathLike]) -> Run:
    """Read a run folder. Raises FileNotFoundError when it is not one, ValueError naming the file
    and line when a file is malformed."""
    folder = Path(path)
    if not (folder / "metrics.jsonl").is_file() and not (folder / "config.toml").is_file():
        raise FileNotFoundError(f"{folder}: not a samix run folder (no metrics.jsonl or config.toml)")
    summary = None
    if (folder / "summary.json").is_file():
        summary = _json(folder / "summary.json", (folder / "summary.json").read_text())
    metrics = []
    if (folder / "metrics.jsonl").is_file():
        for number, line in enumerate((folder / "metrics.jsonl").read_text().splitlines(), 1):
            if line.strip():
                metrics.append(_json(folder / "metrics.jsonl", line, number))
    config: Dict[str, Any] = {}
    if (folder / "config.toml").is_file():
        if _toml is None:
            raise ImportError("reading config.toml needs Python 3.11+ or the tomli package")
        try:
            config = _toml.loads((folder / "config.toml").read_text())
        except _toml.TOMLDecodeError as e:
            raise ValueError(f"{folder / 'config.toml'}: {e}") from None
    return Run(path=folder, summary=summary, metrics=metrics, config=config)


def _json(file: Path, text: str, line: Optional[int] = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"{file}:{line}" if line is not None else str(file)
        raise ValueError(f"{where}: {e.msg} (column {e.colno})") from None
