"""ZFS pool drivers: the interface, the zpool CLI backend and a zfs-fuse helper."""
