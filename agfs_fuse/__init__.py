"""agfs-fuse: mount a remote AGFS server as a local directory."""

__version__ = "0.1.0"
