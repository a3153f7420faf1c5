"""Entitlement: what a node may use of the cloud, from what it contributes (docs/entitlement.md).

The arithmetic (`rms.entitlement.arithmetic`) and the uptime history
(`rms.entitlement.availability`) are sans-IO cores; `rms.entitlement.service` is the daemon's
adapter (status section, heartbeats), with `state` (state files, the policy file) and
`control` (control API routes).
"""
