"""An AGFS-compatible reference server (``agfs-fuse serve``).

The real AGFS server is Go and cannot be built here, so the FUSE client is tested
against this one. It reproduces the real server's wire behaviour, quirks included
(see ``docs``/the protocol page): a client that only works against a tidy fake is no
client. Standard library only, plus PyYAML for the real server's ``config.yaml``.
"""

#: What ``/version``, ``/health`` and ``/capabilities`` report. The version is the real
#: server's, so clients that look at it see a familiar value; ``gitCommit`` says who we are.
VERSION = "1.4.0"
GIT_COMMIT = "agfs-fuse-reference"
BUILD_TIME = "unknown"
