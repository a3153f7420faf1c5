"""True Cloud Volume Provider: exports contributed storage as iSCSI volumes over nested VPNs."""
