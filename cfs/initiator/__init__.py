"""iSCSI initiator drivers: the interface, the libiscsi FUSE bridge and open-iscsi."""
