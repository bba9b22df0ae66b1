"""Response and request bodies as they appear in the OpenAPI document (with examples)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_B64 = "ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWhhc2g="
_CHECKPOINT = ("kiroku.local/log\n1042\n" + _B64 + "\n\n\u2014 kiroku.local/log "
               "Ab3dEfGh…\n")

STATEMENT_EXAMPLE: dict[str, Any] = {
    "statement": {"v": 1, "kind": "provision", "agency": "131121", "key_id": "9f2c4b1a0d3e5f67",
                  "time": "2026-06-10T01:23:45Z",
                  "commitment": "q1Jm3Yf0m2k8ZL0lX9dKc3o4n5p6r7s8t9u0v1w2x3Y="},
    "signature": "base64 Ed25519 signature of the RFC 8785 JSON of 'statement'",
    "payload": {"request_id": "SETA-2026-000123", "subject": "subj-7H2KQ9XW4M3N8P5R6T1V",
                "requester": "KYOKAI", "provider": "131121", "basis": "2-4", "affair": "2",
                "items": ["地方税関係情報"], "requested_at": "2026-06-10T01:23:00Z",
                "provided_at": "2026-06-10T01:23:40Z", "outcome": "provided", "reason": None,
                "non_disclosure": False, "operator": "op-131121-07"},
    "salt": "base64 of 32 random bytes",
}

#: The request body of POST /v1/provisions (docs/log-format.md, "Statements").
STATEMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["statement", "signature", "payload", "salt"],
    "properties": {
        "statement": {"type": "object", "required": ["v", "kind", "agency", "key_id", "time",
                                                     "commitment"],
                      "properties": {"v": {"type": "integer", "enum": [1, 2]},
                                     "kind": {"type": "string", "enum": ["provision"]},
                                     "agency": {"type": "string"}, "key_id": {"type": "string"},
                                     "time": {"type": "string", "format": "date-time"},
                                     "commitment": {"type": "string"}}},
        "signature": {"type": "string"},
        "payload": {"type": "object"},
        "salt": {"type": "string"},
    },
    "example": STATEMENT_EXAMPLE,
}


class Entry(BaseModel):
    """The log entry (leaf) as JSON: the statement plus index, chain link, log time, signature."""

    model_config = ConfigDict(extra="allow")
    v: int
    kind: str
    agency: str
    key_id: str
    time: str
    commitment: str
    index: int
    prev: str
    logged_at: str
    signature: str


class InclusionProof(BaseModel):
    """RFC 9162 §2.1.3 inclusion proof (docs/log-format.md)."""

    leaf_index: int = Field(examples=[1041])
    tree_size: int = Field(examples=[1042])
    leaf_hash: str = Field(examples=[_B64])
    root_hash: str = Field(examples=[_B64])
    proof: list[str] = Field(examples=[[_B64, _B64]])


class ConsistencyProof(BaseModel):
    """RFC 9162 §2.1.4 consistency proof (docs/log-format.md)."""

    old_size: int = Field(examples=[1000])
    new_size: int = Field(examples=[1042])
    old_root: str = Field(examples=[_B64])
    new_root: str = Field(examples=[_B64])
    proof: list[str] = Field(examples=[[_B64]])


class Receipt(BaseModel):
    """Where the statement sits in the log. ``inclusion`` proves it against ``checkpoint`` (the
    operator's signed C2SP note); both are null until a checkpoint covers the entry, at most
    ``KIROKU_CHECKPOINT_INTERVAL`` later: then GET ``receipt_url`` returns them."""

    id: str = Field(examples=["5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a"])
    index: int = Field(examples=[1041])
    leaf_hash: str = Field(examples=[_B64])
    leaf: str = Field(description="base64 of the exact leaf bytes (RFC 8785 JSON)")
    entry: Entry
    checkpoint: str | None = Field(default=None, examples=[_CHECKPOINT])
    inclusion: InclusionProof | None = None
    receipt_url: str = Field(examples=["/v1/provisions/5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a/receipt"])


class BatchReceipt(BaseModel):
    """Receipts in request order. ``checkpoint`` is signed right after the batch and covers every
    entry; per-entry proofs: GET /v1/log/proof/inclusion?index=…&size=<checkpoint size>."""

    count: int = Field(examples=[2])
    checkpoint: str | None = Field(examples=[_CHECKPOINT])
    tree_size: int = Field(examples=[1042])
    receipts: list[Receipt]


class Challenge(BaseModel):
    challenge: str = Field(examples=["eyJleHAiOjE3MTgwMDAwMDAsImp0aSI6Ii4uLiJ9.c2ln"])
    message: str = Field(description="The exact text to sign with the certificate's key "
                         "(UTF-8): 'kiroku-login/v1', the log origin and the challenge, each "
                         "ending in a newline",
                         examples=["kiroku-login/v1\nkiroku.local/log\neyJleHAiOjE3...\n"])
    expires_at: str = Field(examples=["2026-06-10T01:25:45Z"])


class LoginRequest(BaseModel):
    certificate: str = Field(max_length=16384, description="The resident's X.509 certificate "
                             "(PEM)", examples=["-----BEGIN CERTIFICATE-----\n…"])
    challenge: str = Field(max_length=4096, examples=["eyJleHAiOjE3MTgwMDAwMDAsImp0aSI6Ii4uLiJ9.c2ln"])
    signature: str = Field(max_length=2048, description="base64 signature of 'message' "
                           "(RSA PKCS#1 v1.5 SHA-256, ECDSA P-256 SHA-256 or Ed25519)",
                           examples=["MEUCIQ…"])


class Session(BaseModel):
    access_token: str = Field(examples=["eyJjZnAiOiIuLi4ifQ.c2ln"])
    token_type: str = Field(examples=["Bearer"])
    expires_in: int = Field(examples=[900])
    expires_at: str = Field(examples=["2026-06-10T01:38:45Z"])


class AgencyName(BaseModel):
    code: str = Field(examples=["131121"])
    name_ja: str = Field(examples=["世田谷区"])
    name_en: str = Field(examples=["Setagaya City"])


class AffairName(BaseModel):
    id: str = Field(examples=["2"])
    ja: str = Field(examples=["健康保険法による保険給付の支給に関する事務"])
    en: str = Field(examples=["Payment of insurance benefits under the Health Insurance Act"])


class ItemName(BaseModel):
    code: str = Field(examples=["地方税関係情報"])
    ja: str = Field(examples=["地方税関係情報"])
    en: str = Field(examples=["Local-tax information (assessed tax and its basis)"])


class Record(BaseModel):
    """Who asked whom for what about the resident, for which affair, and what happened."""

    id: str = Field(description="The provision's id (for GET /v1/me/provisions/{id})",
                    examples=["b0edf813-295c-53f5-9222-2ae16c48d137"])
    index: int = Field(description="Its position in the log", examples=[1041])
    requested_at: str = Field(examples=["2026-06-10T01:23:00Z"])
    provided_at: str | None = Field(examples=["2026-06-10T01:23:40Z"])
    requester: AgencyName
    provider: AgencyName
    affair: AffairName
    basis: str = Field(description="Row of the legal-basis table (My Number Act, Annexed "
                       "Table 2)", examples=["2-4"])
    items: list[ItemName]
    outcome: str = Field(examples=["provided"], description="provided or not_provided")
    reason: str | None = Field(examples=[None], description="Reason code when not provided")
    log: str | None = Field(default=None, examples=["kiroku.example/2026"],
                            description="In a sharded deployment (docs/shards.md), the origin of "
                            "the log that holds the record: its proofs and vkey are that log's")


_RECORD_EXAMPLE: dict[str, Any] = {
    "id": "b0edf813-295c-53f5-9222-2ae16c48d137", "index": 1041,
    "requested_at": "2026-06-10T01:23:00Z", "provided_at": "2026-06-10T01:23:40Z",
    "requester": {"code": "KYOKAI", "name_ja": "全国健康保険協会", "name_en": "Kyokai Kenpo"},
    "provider": {"code": "131121", "name_ja": "世田谷区", "name_en": "Setagaya City"},
    "affair": {"id": "2", "ja": "健康保険法による保険給付の支給に関する事務",
               "en": "Payment of insurance benefits under the Health Insurance Act"},
    "basis": "2-4",
    "items": [{"code": "地方税関係情報", "ja": "地方税関係情報",
               "en": "Local-tax information (assessed tax and its basis)"}],
    "outcome": "provided", "reason": None,
}


class RecordPage(BaseModel):
    """One page of the resident's records, newest first; pass ``next_cursor`` as ``cursor``."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "items": [_RECORD_EXAMPLE], "next_cursor": "MTc5NTUxMDQzNzAwMDAwMDo4", "as_of": 1041}})

    items: list[Record]
    next_cursor: str | None = None
    as_of: int | None = Field(default=None, description="The last log index the resident view "
                              "has applied (null: none yet); later provisions are not shown yet")


class RecordDetail(BaseModel):
    """One record with everything needed to verify it offline: the leaf hashes into
    ``inclusion.leaf_hash``; the proof leads to the root signed in ``checkpoint`` (check it with
    ``vkey``); the leaf's ``commitment`` is SHA-256 over ``salt`` and the payload."""

    record: Record
    leaf: str
    leaf_hash: str
    payload: dict[str, Any] | None
    salt: str | None
    checkpoint: str | None
    inclusion: InclusionProof | None
    vkey: str


class CheckpointInfo(BaseModel):
    tree_size: int = Field(examples=[1042])
    root_hash: str = Field(examples=[_B64])
    signed_at: str = Field(examples=["2026-06-10T01:23:46Z"])
    note: str = Field(examples=[_CHECKPOINT])


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointInfo]


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    tree_size: int = Field(examples=[1042])
    checkpoint_size: int = Field(examples=[1042])
    projections: list[dict[str, Any]] = Field(default_factory=list)


class LogInfo(BaseModel):
    origin: str = Field(examples=["kiroku.local/log"])
    vkey: str = Field(examples=["kiroku.local/log+1a2b3c4d+AbCd…"])
    tree_size: int = Field(examples=[1042])


class ReportTotals(BaseModel):
    as_requester: int = Field(examples=[0])
    as_provider: int = Field(examples=[6])
    not_provided: int = Field(examples=[0])
    non_disclosed: int = Field(examples=[1])


class ReportFlag(BaseModel):
    """One flag change on a provision the agency requested or provided, or that it made as an
    authority: who (``agency``, ``role``) set or lifted which flag, when and why."""

    index: int = Field(description="Log index of the change", examples=[1043])
    record_index: int = Field(description="Log index of the provision", examples=[1041])
    provision: str = Field(examples=["5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a"])
    flag: str = Field(examples=["non_disclosure"])
    set: bool = Field(examples=[True])
    reason: str = Field(examples=["criminal_investigation"])
    agency: str = Field(examples=["131121"])
    role: str = Field(examples=["provider"])
    disclose_after: str | None = Field(examples=["2026-12-31T15:00:00Z"])
    logged_at: str = Field(examples=["2026-06-11T00:10:01Z"])


class Names(BaseModel):
    ja: str
    en: str


class ReportCount(BaseModel):
    role: str = Field(examples=["provider"])
    month: str = Field(description="YYYY-MM in Japan Standard Time", examples=["2026-06"])
    affair: str = Field(examples=["2"])
    outcome: str = Field(examples=["provided"])
    reason: str | None = Field(examples=[None])
    n: int = Field(examples=[6])
    non_disclosed: int = Field(examples=[1])


class ReportOperator(BaseModel):
    month: str = Field(examples=["2026-06"])
    operator: str = Field(examples=["op-131121-07"])
    n: int = Field(examples=[42])


class ReportRefusal(BaseModel):
    role: str = Field(examples=["provider"])
    reason: str | None = Field(examples=["no-record"])
    n: int = Field(examples=[3])


class AgencyReport(BaseModel):
    """An agency's audit report (projections.report): counts by role, JST month, affair and
    outcome; requests per staff operator; refusals by reason; non-disclosed records; anomalies
    (off-hours requests, operator outliers, bursts and repeated look-ups about one resident,
    named by pseudonym) under the ``rules`` shown."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "agency": {"code": "131121", "name_ja": "世田谷区", "name_en": "Setagaya City"},
        "as_of": None,
        "totals": {"as_requester": 0, "as_provider": 6, "not_provided": 0, "non_disclosed": 1},
        "affairs": {"2": {"ja": "健康保険法による保険給付の支給に関する事務",
                          "en": "Payment of insurance benefits under the Health Insurance Act"}},
        "counts": [{"role": "provider", "month": "2026-06", "affair": "2",
                    "outcome": "provided", "reason": None, "n": 6, "non_disclosed": 1}],
        "operators": [], "refusals": [],
        "anomalies": {"off_hours": {"count": 0, "items": []}, "operator_outliers": [],
                      "bursts": [], "repeated_lookups": []},
        "rules": {"business_start": "08:30", "business_end": "17:45", "holidays": ["01-01"],
                  "operator_factor": 10.0, "operator_min": 40, "operator_min_peers": 2,
                  "burst_count": 5, "burst_window": 3600, "repeat_count": 4,
                  "repeat_window": 2592000}}})

    agency: AgencyName
    as_of: int | None = Field(description="The last log index counted (null: all projected)")
    totals: ReportTotals
    affairs: dict[str, Names]
    counts: list[ReportCount]
    operators: list[ReportOperator]
    refusals: list[ReportRefusal]
    anomalies: dict[str, Any]
    rules: dict[str, Any]
    flags: list[ReportFlag] = Field(default_factory=list)
    withheld: int = Field(default=0, examples=[1], description="The agency's records withheld "
                          "from their resident now by a flag or a delayed disclosure")
    logs: list[str] | None = Field(default=None, description="In a sharded deployment "
                                   "(docs/shards.md), the logs counted, oldest first")
