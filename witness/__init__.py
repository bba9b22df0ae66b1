"""A transparency-log witness (C2SP tlog-witness, tlog-cosignature/v1).

An independent party: it imports neither the ledger nor its Merkle library, only ``verifier``
(itself independent of the writer), so a bug on the log's side is not mirrored here.
"""
