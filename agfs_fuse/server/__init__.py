"""An AGFS-compatible reference server (``agfs-fuse serve``).

The real AGFS server is Go; the FUSE client's tests run against this one by default
(and against the real binary with ``--agfs-server-bin``). It reproduces the real
server's wire behaviour, quirks included (docs/PROTOCOL.md): a client that only works
against a tidy fake is no client. Standard library, plus PyYAML for the real server's
``config.yaml``, h11 to parse requests and google-re2 for grep's Go regexes.
"""

#: What ``/version``, ``/health`` and ``/capabilities`` report. The version is the real
#: server's, so clients that look at it see a familiar value; ``gitCommit`` says who we are.
VERSION = "1.4.0"
GIT_COMMIT = "agfs-fuse-reference"
BUILD_TIME = "unknown"
