"""Read models built from the ledger's notification log.

- ``resident``: what each resident sees about themself (``ResidentRecords``);
- ``report``: per-agency audit reports with anomalies (``AgencyReport``), CSV and SVG exports;
- ``runner``: follows the log and writes every view exactly once (``catch_up``, ``status``,
  ``rebuild``);
- ``cli``: ``kiroku projections …`` and ``kiroku report``.

Dependencies flow one way: ``projections`` imports ``ledger``, never ``api``.
"""
