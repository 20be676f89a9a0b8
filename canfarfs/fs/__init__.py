"""The file system: a FUSE-free core (storage, caches, staging) and a thin pyfuse3 adapter."""
