"""True Cloud management VPN discovery feed (RSS of signed VPN records)."""
