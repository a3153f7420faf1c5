"""Accounting: signed usage receipts and the node's hash-chain ledger (docs/accounting.md).

`canonical` (the signed-JSON helpers the policy document and audit reports share),
`receipt` and `chain` are sans-IO cores; `store` keeps the ledger file and serves it on the
control API.
"""
