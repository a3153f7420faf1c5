"""True Cloud Cloud File System: a ZFS RAIDZ3 pool over 8 remote volumes."""
