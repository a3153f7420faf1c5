"""Audits and reputation (docs/accounting.md): CFS clients check their providers, sign what
they found, and every node weighs those reports the same way.

`report` (signed audit reports and the read challenges over what a client wrote) and
`reputation` (decay, warning, repair, corroborated penalties) are sans-IO cores; `service`
keeps the history in the state directory and serves it on the control API.
"""
