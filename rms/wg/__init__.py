"""WireGuard: keys, the driver interface with its backends, and the mesh controller.

See docs/wireguard.md. Callers import from the modules: `rms.wg.manager` (`WireGuard`,
`open_wireguard`), `rms.wg.model` (`InterfaceConfig`, `PeerConfig`, `Endpoint`, the states),
`rms.wg.keys`. Nothing is imported here, so the sans-IO modules (keys, model, changes,
uapi, mesh) stay free of pyroute2 and asyncio for whoever imports only them.
"""
