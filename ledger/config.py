"""Where kiroku keeps its data and keys, from the environment.

- ``KIROKU_HOME``: base directory (default ``./var``); the SQLite database and keys live here.
- ``KIROKU_DATABASE_URL``: SQLAlchemy URL (default ``sqlite:///$KIROKU_HOME/kiroku.sqlite3``);
  PostgreSQL as ``postgresql+psycopg://user@host/db``.
- ``KIROKU_KEY_DIR``: directory of the operator key (default ``$KIROKU_HOME/keys``), mode 0700,
  key files 0600.
- ``KIROKU_LOG_ORIGIN``: the checkpoint origin line and note key name (default ``kiroku.local/log``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    key_dir: Path
    origin: str

    @property
    def operator_key_path(self) -> Path:
        return self.key_dir / "operator.pem"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("KIROKU_HOME", "var"))
        url = env.get("KIROKU_DATABASE_URL") or f"sqlite:///{home / 'kiroku.sqlite3'}"
        key_dir = Path(env.get("KIROKU_KEY_DIR", str(home / "keys")))
        origin = env.get("KIROKU_LOG_ORIGIN", "kiroku.local/log")
        return cls(home=home, database_url=url, key_dir=key_dir, origin=origin)
