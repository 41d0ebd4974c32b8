"""Under ``allow_other``, what another user creates is theirs, so they can work on it.

AGFS has no owners: everything shows the mount's owner. With ``default_permissions`` the
kernel then refused the creator's own chmod (EPERM), truncate and open for write (EACCES)
of a file they had just made. The mount keeps the creator's uid/gid as it keeps a chown.
"""

from __future__ import annotations

import os

import pytest

from tests.access.test_permissions import NOBODY, run_as_nobody

pytestmark = pytest.mark.timeout(60)


def test_another_users_new_entries_are_theirs(make_mount, server, remote_dir):
    server.http.mkdir(f"{remote_dir}/shared", 0o777)
    mount = make_mount(server.url, options=["allow_other"])
    shared = mount.path / remote_dir.lstrip("/") / "shared"
    run_as_nobody(
        f"cd {shared} && echo one > f && chmod 600 f && echo two >> f && truncate -s 6 f"
        " && mkdir d && chmod 700 d && echo inner > d/inner && ln -s f link && chmod 640 f"
    )
    for name in ("f", "d", "d/inner", "link"):
        info = os.lstat(shared / name)
        assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY), name
    assert server.http.read(f"{remote_dir}/shared/f") == b"one\ntw"
    assert server.http.stat(f"{remote_dir}/shared/f")["mode"] & 0o777 == 0o640
    assert server.http.stat(f"{remote_dir}/shared/d")["mode"] & 0o777 == 0o700
    assert run_as_nobody(f"cat {shared}/d/inner").stdout == "inner\n"
    # what root makes in the same directory stays the mount owner's
    (shared / "roots").write_text("x")
    assert os.stat(shared / "roots").st_uid == os.getuid()
