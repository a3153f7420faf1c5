"""WireGuard: keys, the driver interface with its backends, and the mesh controller."""
