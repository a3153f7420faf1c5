"""The VPN manager: the daemon's service that joins, founds and keeps management VPNs."""
