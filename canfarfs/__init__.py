"""canfarfs: CANFAR storage and Skaha sessions as a FUSE file system."""

__version__ = "0.1.0"
