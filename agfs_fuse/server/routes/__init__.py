"""The ``/api/v1`` routes, with the real server's status codes and message texts.

One module per endpoint group, so each group's Go quirks can be read on one screen:

- ``dispatch``: the routing table and Go ``ServeMux``'s routing rules (``Api``).
- ``info``: ``/health``, ``/ready``, ``/version``, ``/capabilities``, ``/mounts``, ``/``.
- ``files``: ``/files``, ``/directories`` and their aliases ``/mkdir``, ``/write``, ``/list``.
- ``metadata``: ``/stat``, ``/rename``, ``/chmod``, ``/truncate``, ``/touch``,
  ``/symlink``, ``/readlink``.
- ``handles``: ``/handles/open`` and the ``/handles/`` subtree.
- ``search``: ``/grep`` and ``/digest``.
- ``testhooks``: request counting and ``/_test/*`` (not AGFS; only with test hooks on).
- ``replies``, ``params``, ``bodies``, ``pieces``: what the groups share (answers, Go's
  number parsing, request bodies, streamed pieces).

Imports point one way: ``dispatch`` imports the groups, the groups import the shared
modules, and the shared modules import nothing from this package but ``replies``.
Nothing here imports this ``__init__``'s names, so it stays free of re-exports.
"""
