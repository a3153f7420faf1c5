"""Guest admission: how a newcomer gets into a management VPN (docs/admission.md).

Sans-IO cores: `guardian.Guardian` (one guest slot, rate-limited, decides the fit, mints
and seals the newcomer's WireGuard key), `newcomer.NewcomerSession` (one exchange) and
`planner.AdmissionPlanner` (which VPN to try, backing off when busy). Thin asyncio
adapters: `server.AdmissionServer`, `client.request_admission` and `client.run_admission`.
This package imports none of them, so importing a core never pulls in asyncio.
"""
