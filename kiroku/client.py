"""A Python client of the kiroku API (docs/api.md).

- ``AgencyClient``: sign provision payloads with the agency's key and submit them (one or a
  batch), fetch receipts with inclusion proofs, read the agency's report.
- ``ResidentClient``: log in with a certificate and its key, list and fetch one's records, and
  ``verify_record``: check a record offline against the operator's vkey (with ``verifier``, the
  independent checker, not with the writer's code).
- ``AuditorClient``: stream entries, read any agency's report.

Also a small command line: ``python -m kiroku.client --help``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from api.request_signing import sign_request
from api.residents import sign_login
from ledger.keys import SigningKey
from ledger.signing import sign_statement
from verifier.checkpoint import open_checkpoint
from verifier.cosignature import CosignatureVerifier, require_quorum
from verifier.entry import canonical_json as verifier_jcs
from verifier.entry import commitment_of
from verifier.errors import VerificationError
from verifier.merkle import leaf_hash, verify_inclusion
from verifier.note import NoteVerifier
from verifier.proofs import InclusionProof


class ApiProblem(Exception):
    """The service answered with an RFC 9457 problem."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status, self.problem = status, problem
        self.code = str(problem.get("code") or problem.get("type", "")).rsplit(":", 1)[-1]
        super().__init__(f"{status} {self.code}: {problem.get('detail', '')}")


class _Base:
    def __init__(self, url: str, *, client: httpx.Client | None = None, timeout: float = 60) -> None:
        self.http = client or httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:500]}
            raise ApiProblem(response.status_code, body if isinstance(body, dict) else {})
        return response

    # Public log routes (no credential) --------------------------------------------------------
    def log_info(self) -> dict[str, Any]:
        return self._check(self.http.get("/v1/log")).json()  # type: ignore[no-any-return]

    def checkpoint(self) -> str:
        return self._check(self.http.get("/v1/log/checkpoint")).text

    def inclusion_proof(self, index: int, size: int | None = None) -> dict[str, Any]:
        params = {"index": index, **({"size": size} if size else {})}
        return self._check(self.http.get("/v1/log/proof/inclusion", params=params)).json()  # type: ignore[no-any-return]


class _Signed(_Base):
    """Requests signed with Kiroku-Signature (agencies and auditors)."""

    def __init__(self, url: str, key: SigningKey, principal: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.key, self.principal = key, principal

    def signed_get(self, target: str, *, stream: bool = False) -> httpx.Response:
        header = sign_request(self.key, self.principal, "GET", target)
        if stream:
            request = self.http.build_request("GET", target, headers={"Authorization": header})
            return self._check_stream(self.http.send(request, stream=True))
        return self._check(self.http.get(target, headers={"Authorization": header}))

    def _check_stream(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            response.read()
            response.close()
            return self._check(response)
        return response

    def report(self, code: str) -> dict[str, Any]:
        return self.signed_get(f"/v1/agencies/{code}/report").json()  # type: ignore[no-any-return]


class AgencyClient(_Signed):
    def __init__(self, url: str, code: str, key: SigningKey, **kwargs: Any) -> None:
        super().__init__(url, key, f"agency:{code}", **kwargs)
        self.code = code

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        return sign_statement(payload, kind="provision", agency=self.code, key=self.key)

    def submit(self, statement: dict[str, Any], *, wait: bool = False) -> dict[str, Any]:
        """Append one signed statement; returns its receipt (with proof when ``wait``)."""
        response = self.http.post("/v1/provisions", json=statement,
                                  params={"wait": "true"} if wait else None)
        return self._check(response).json()  # type: ignore[no-any-return]

    def submit_batch(self, statements: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return self._check(self.http.post("/v1/provisions/batch", json=list(statements))).json()  # type: ignore[no-any-return]

    def receipt(self, provision_id: str, *, wait: float = 5.0) -> dict[str, Any]:
        """The receipt with its inclusion proof, polling while it is pending."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.signed_get(f"/v1/provisions/{provision_id}/receipt").json()  # type: ignore[no-any-return]
            except ApiProblem as exc:
                if exc.code != "proof-pending" or time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def my_report(self) -> dict[str, Any]:
        return self.report(self.code)


class AuditorClient(_Signed):
    def __init__(self, url: str, name: str, key: SigningKey, **kwargs: Any) -> None:
        super().__init__(url, key, f"auditor:{name}", **kwargs)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[dict[str, Any]]:
        target = f"/v1/log/entries?start={start}" + (f"&end={end}" if end is not None else "")
        response = self.signed_get(target, stream=True)
        try:
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)
        finally:
            response.close()


def _load_private_key(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


class ResidentClient(_Base):
    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.token: str | None = None

    def login(self, certificate_pem: str, private_key: Any) -> dict[str, Any]:
        challenge = self._check(self.http.post("/v1/auth/challenge")).json()
        signature = sign_login(private_key, challenge["message"].encode())
        session = self._check(self.http.post("/v1/auth/session", json={
            "certificate": certificate_pem, "challenge": challenge["challenge"],
            "signature": base64.b64encode(signature).decode()})).json()
        self.token = session["access_token"]
        return session  # type: ignore[no-any-return]

    def login_files(self, certificate: Path, key: Path) -> dict[str, Any]:
        return self.login(certificate.read_text(), _load_private_key(key))

    def _auth(self) -> dict[str, str]:
        if self.token is None:
            raise RuntimeError("log in first")
        return {"Authorization": f"Bearer {self.token}"}

    def provisions(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._check(self.http.get("/v1/me/provisions", params=params,
                                         headers=self._auth())).json()  # type: ignore[no-any-return]

    def all_provisions(self, **filters: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.provisions(cursor=cursor, **filters)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def provision(self, provision_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/me/provisions/{provision_id}",
                                         headers=self._auth())).json()  # type: ignore[no-any-return]

    def completeness(self) -> dict[str, Any]:
        return self._check(self.http.get("/v1/me/completeness",
                                         headers=self._auth())).json()  # type: ignore[no-any-return]


def verify_record(detail: dict[str, Any], vkey: str, *, witnesses: Sequence[str] = (),
                  quorum: int | None = None) -> dict[str, Any]:
    """Check a record from GET /v1/me/provisions/{id} offline; raise VerificationError.

    1. the checkpoint is signed by the operator (``vkey``, obtained out of band) and, when
       ``witnesses`` (cosignature/v1 vkeys) are given, cosigned by ``quorum`` of them (default:
       all; QuorumNotMet says how many were found);
    2. the leaf bytes hash to the proof's leaf hash, and the proof leads to the checkpoint's root
       (RFC 9162 §2.1.3.2);
    3. the leaf's commitment matches the payload and salt, so the payload shown is the one signed;
    4. the leaf's index is the record's. Returns the leaf JSON.
    """
    if not detail.get("checkpoint") or not detail.get("inclusion"):
        raise VerificationError("no checkpoint covers this record yet; fetch it again shortly")
    checkpoint = open_checkpoint(detail["checkpoint"], NoteVerifier.from_vkey(vkey))
    if witnesses:
        trusted = [CosignatureVerifier.from_vkey(w) for w in witnesses]
        require_quorum(detail["checkpoint"], trusted, len(trusted) if quorum is None else quorum)
    proof = InclusionProof.from_json(json.dumps(detail["inclusion"]))
    leaf = base64.b64decode(detail["leaf"])
    if leaf_hash(leaf) != proof.leaf_hash:
        raise VerificationError("the leaf does not hash to the proof's leaf hash")
    if (proof.tree_size, proof.root_hash) != (checkpoint.size, checkpoint.root):
        raise VerificationError("the proof is not for the signed checkpoint")
    verify_inclusion(proof.leaf_hash, proof.leaf_index, checkpoint.size, proof.proof,
                     checkpoint.root)
    entry = json.loads(leaf)
    if entry.get("index") != proof.leaf_index or entry.get("index") != detail["record"].get(
            "index", entry.get("index")):
        raise VerificationError("the leaf's index is not the record's")
    if detail.get("payload") is not None:
        salt = base64.b64decode(detail["salt"])
        if commitment_of(salt, verifier_jcs(detail["payload"])) != entry.get("commitment"):
            raise VerificationError("the payload does not match the signed commitment")
    return entry  # type: ignore[no-any-return]


def verify_completeness(proof: dict[str, Any], vkey: str, details: Sequence[dict[str, Any]]
                        ) -> Any:
    """Check GET /v1/me/completeness against the records the resident was shown; raise
    VerificationError (docs/completeness.md "What a resident checks").

    ``details`` are the resident's records from GET /v1/me/provisions/{id}: each is verified
    with ``verify_record`` first, and the index must list exactly their (index, leaf hash)
    below its signed size. The pseudonym in their payloads is checked against the key note.
    """
    from verifier.completeness import ResidentProof, verify_resident_proof

    held, subjects = [], set()
    for detail in details:
        if not detail.get("inclusion"):
            continue  # appended after the latest checkpoint: beyond any signed index too
        entry = verify_record(detail, vkey)
        held.append((int(entry["index"]), base64.b64decode(detail["leaf_hash"])))
        # A version-2 payload names link codes, not the pseudonym: nothing to bind then.
        if detail.get("payload") is not None and "subject" in detail["payload"]:
            subjects.add(detail["payload"]["subject"])
    if len(subjects) > 1:
        raise VerificationError("the records shown are about more than one subject")
    return verify_resident_proof(ResidentProof.from_json(proof), NoteVerifier.from_vkey(vkey),
                                 held=held, subject=next(iter(subjects), None))


# -- command line -------------------------------------------------------------------------------
def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiroku.client",
                                     description="Talk to a kiroku API as a resident, an agency "
                                     "or an auditor (docs/api.md).")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    sub = parser.add_subparsers(dest="role", required=True)
    res = sub.add_parser("resident", help="log in with a certificate, list and verify records")
    res.add_argument("--cert", type=Path, required=True)
    res.add_argument("--key", type=Path, required=True)
    res.add_argument("--vkey", help="operator vkey to verify against (default: ask the server, "
                     "which only proves consistency, not authenticity)")
    res.add_argument("--witness", action="append", default=[], metavar="VKEY",
                     help="a trusted witness's vkey (repeatable): verify refuses a checkpoint "
                     "without --quorum of their cosignatures")
    res.add_argument("--quorum", type=int, help="K of the --witness keys (default: all)")
    res.add_argument("action", choices=["login", "list", "show", "verify", "completeness"],
                     help="completeness: check that the records shown are all the signed index "
                     "lists about you (docs/completeness.md)")
    res.add_argument("id", nargs="?", help="record id for show/verify")
    for name in ("agency", "auditor"):
        p = sub.add_parser(name, help=f"signed GET as an {name}")
        p.add_argument("--name", required=True, help="agency code or auditor name")
        p.add_argument("--key", type=Path, required=True, help="Ed25519 PEM private key")
        p.add_argument("target", help="path and query, e.g. /v1/log/entries?start=0&end=5")
    args = parser.parse_args(argv)
    try:
        if args.role == "resident":
            client = ResidentClient(args.url)
            session = client.login_files(args.cert, args.key)
            if args.action == "login":
                _print(session)
            elif args.action == "list":
                _print(client.provisions())
            elif args.action == "completeness":
                vkey = args.vkey or client.log_info()["vkey"]
                proof = client.completeness()
                details = [client.provision(r["id"]) for r in client.all_provisions()]
                result = verify_completeness(proof, vkey, details)
                print(f"OK the index signed at size {result.size} lists exactly the "
                      f"{len(result.records)} records you were shown from index "
                      f"{result.retained_from} on")
            else:
                if not args.id:
                    parser.error("give a record id")
                detail = client.provision(args.id)
                if args.action == "show":
                    _print(detail)
                else:
                    verify_record(detail, args.vkey or client.log_info()["vkey"],
                                  witnesses=args.witness, quorum=args.quorum)
                    print(f"OK record {args.id} is entry {detail['inclusion']['leaf_index']} of "
                          f"the log at signed size {detail['inclusion']['tree_size']}")
        else:
            key = SigningKey.load(args.key)
            cls = AgencyClient if args.role == "agency" else AuditorClient
            signed = cls(args.url, args.name, key)
            response = signed.signed_get(args.target)
            kind = response.headers.get("content-type", "").split(";")[0].strip()
            sys.stdout.write(json.dumps(response.json(), ensure_ascii=False, indent=2) + "\n"
                             if kind == "application/json" else response.text)
    except ApiProblem as exc:
        print(f"kiroku.client: {exc}", file=sys.stderr)
        return 1
    except VerificationError as exc:
        print(f"kiroku.client: verification FAILED: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"kiroku.client: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
