"""iSCSI target drivers: the interface, the controller, and the tgt and LIO backends."""
