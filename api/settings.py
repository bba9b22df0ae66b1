"""Service configuration from the environment (pydantic-settings), refusing unsafe defaults.

Variables (prefix ``KIROKU_``): the ledger's own (``HOME``, ``DATABASE_URL``, ``KEY_DIR``,
``LOG_ORIGIN``, see ledger.config) plus:

- ``DEMO``: ``1`` turns on demo mode, where missing secrets are generated under ``$KIROKU_HOME``
  and the demo's test CA and auditor key are trusted. Outside demo mode the service refuses to
  start without ``SESSION_SECRET``, ``RESIDENT_CA`` and ``AUDITOR_KEYS``.
- ``SESSION_SECRET``: at least 32 bytes; signs login challenges and resident sessions (HMAC).
- ``RESIDENT_CA``: PEM file of the CA certificate(s) that issue residents' certificates.
- ``AUDITOR_KEYS``: ``name=base64(raw Ed25519 public key)`` entries separated by commas.
- ``SESSION_TTL`` (s, default 900), ``CHALLENGE_TTL`` (s, 120), ``REQUEST_SKEW`` (s, 300).
- ``CHECKPOINT_INTERVAL`` (s, default 1.0): the bound on how long an accepted statement waits for
  a signed checkpoint covering it.
- ``PROJECTION_INTERVAL`` (s, default 1.0): how often each worker brings the read views up to date.
- ``MAX_BODY_BYTES`` (default 64 KiB) and ``MAX_BATCH_BYTES`` (default 32 MiB).
- ``WITNESSES``: the witnesses (C2SP tlog-witness) the housekeeping sends each new checkpoint
  to, as comma-separated ``NAME URL VKEY`` entries (the vkey's key name must be NAME; signature
  type 0x04, tlog-cosignature/v1). ``WITNESS_QUORUM`` (default: all of them): how many distinct
  witnesses must cosign before a checkpoint counts as witnessed. ``WITNESS_TIMEOUT`` (s, 5).
- ``SHARDS``: a TOML file listing the deployment's shards, oldest first (docs/shards.md); the
  last one takes appends and serves ``/v1/log``. Unset: one log, from the variables above.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.config import Settings as LedgerSettings
from ledger.errors import ConfigurationError
from ledger.keys import statement_key_id
from verifier.cosignature import CosignatureVerifier
from verifier.errors import VerificationError

MIN_SECRET_BYTES = 32


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIROKU_", extra="ignore", frozen=True)

    home: Path = Path("var")
    database_url: str | None = None
    key_dir: Path | None = None
    log_origin: str = "kiroku.local/log"

    demo: bool = False
    session_secret: SecretStr | None = None
    resident_ca: Path | None = None
    auditor_keys: str = ""

    session_ttl: int = Field(default=900, ge=30, le=86_400)
    challenge_ttl: int = Field(default=120, ge=10, le=3_600)
    request_skew: int = Field(default=300, ge=10, le=3_600)
    checkpoint_interval: float = Field(default=1.0, gt=0, le=60)
    projection_interval: float = Field(default=1.0, gt=0, le=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_batch_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    background: bool = True  # checkpointer and projection threads (tests may turn them off)
    witnesses: str = ""
    witness_quorum: int | None = Field(default=None, ge=1)
    witness_timeout: float = Field(default=5.0, gt=0, le=120)
    shards: Path | None = None  # docs/shards.md
    # /readyz answers 503 while a read view is further behind the log than this (docs/api.md).
    ready_max_lag_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _check_witnesses(self) -> ApiSettings:
        found = parse_witnesses(self.witnesses)
        if self.witness_quorum is not None and self.witness_quorum > len(found):
            raise ValueError(f"KIROKU_WITNESS_QUORUM is {self.witness_quorum}, but "
                             f"KIROKU_WITNESSES names {len(found)} witness(es)")
        return self

    def witness_list(self) -> list[WitnessEndpoint]:
        return parse_witnesses(self.witnesses)

    @property
    def quorum(self) -> int:
        """k of the k-of-n witness policy (all configured witnesses unless set)."""
        return self.witness_quorum or len(self.witness_list())

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> ApiSettings:
        if self.demo:
            return self
        missing = [name for name, value in (
            ("KIROKU_SESSION_SECRET", self.session_secret),
            ("KIROKU_RESIDENT_CA", self.resident_ca),
            ("KIROKU_AUDITOR_KEYS", self.auditor_keys)) if not value]
        if missing:
            raise ValueError(
                f"{', '.join(missing)} must be set outside demo mode (KIROKU_DEMO=1 generates "
                "demo values); see docs/api.md")
        assert self.session_secret is not None
        if len(self.session_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"KIROKU_SESSION_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        if self.resident_ca is not None and not self.resident_ca.is_file():
            raise ValueError(f"KIROKU_RESIDENT_CA {self.resident_ca} is not a file")
        parse_auditor_keys(self.auditor_keys)
        return self

    # Derived values ---------------------------------------------------------------------------
    def ledger_settings(self) -> LedgerSettings:
        url = self.database_url or f"sqlite:///{self.home / 'kiroku.sqlite3'}"
        return LedgerSettings(home=self.home, database_url=url,
                              key_dir=self.key_dir or self.home / "keys", origin=self.log_origin)

    @property
    def demo_dir(self) -> Path:
        """Where demo mode keeps its generated secrets, test CA and residents' credentials."""
        return self.ledger_settings().key_dir / "demo"

    def secret(self) -> bytes:
        """The session secret; in demo mode generated once and kept in a 0600 file."""
        if self.session_secret is not None:
            return self.session_secret.get_secret_value().encode()
        if not self.demo:
            raise ConfigurationError("KIROKU_SESSION_SECRET is not set")
        path = self.demo_dir / "session.secret"
        if not path.exists():
            from api.demo import write_private

            write_private(path, secrets.token_urlsafe(48).encode())
        return path.read_bytes().strip()

    def resident_ca_path(self) -> Path:
        return self.resident_ca or self.demo_dir / "resident-ca.crt"

    def auditors(self) -> dict[str, tuple[str, bytes]]:
        """key id -> (auditor name, raw public key)."""
        text = self.auditor_keys
        if not text and self.demo:
            path = self.demo_dir / "auditor.pub"
            text = path.read_text().strip() if path.exists() else ""
        return parse_auditor_keys(text)


@dataclass(frozen=True)
class WitnessEndpoint:
    """One configured witness: its name, its add-checkpoint URL prefix and its key."""

    name: str
    url: str
    verifier: CosignatureVerifier

    @property
    def vkey(self) -> str:
        return self.verifier.vkey


def parse_witnesses(text: str) -> list[WitnessEndpoint]:
    """``NAME URL VKEY`` entries separated by commas (KIROKU_WITNESSES)."""
    found: list[WitnessEndpoint] = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        fields = entry.split()
        if len(fields) != 3:
            raise ValueError(f"witness {entry[:60]!r} is not 'NAME URL VKEY'")
        name, url, vkey = fields
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"witness {name!r} URL {url[:60]!r} is not http(s)")
        try:
            verifier = CosignatureVerifier.from_vkey(vkey)
        except VerificationError as exc:
            raise ValueError(f"witness {name!r}: {exc}") from None
        if verifier.name != name:
            raise ValueError(f"witness {name!r} has a vkey named {verifier.name!r}; they must match")
        if any(w.vkey == verifier.vkey or w.name == name for w in found):
            raise ValueError(f"witness {name!r} is listed twice")
        found.append(WitnessEndpoint(name, url.rstrip("/"), verifier))
    return found


def parse_auditor_keys(text: str) -> dict[str, tuple[str, bytes]]:
    keys: dict[str, tuple[str, bytes]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, encoded = entry.partition("=")
        try:
            public = base64.b64decode(encoded, validate=True) if sep else b""
        except binascii.Error:
            public = b""
        if not name or len(public) != 32:
            raise ValueError(f"auditor key {entry[:40]!r} is not name=base64(32-byte Ed25519 key)")
        keys[statement_key_id(public)] = (name, public)
    return keys
