"""File and directory routes on memfs, and the virtual root."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.server.helpers import check_file_info, err


def test_write_read_stat(client: httpx.Client, ws: str) -> None:
    r = client.put("/files", params={"path": f"{ws}/a.txt"}, content=b"hello")
    assert r.status_code == 200 and r.json() == {"message": "Written 5 bytes"}
    assert client.get("/files", params={"path": f"{ws}/a.txt"}).content == b"hello"
    info = client.get("/stat", params={"path": f"{ws}/a.txt"}).json()
    check_file_info(info)
    assert info["name"] == "a.txt" and info["size"] == 5 and info["mode"] == 0o644
    assert info["isDir"] is False
    assert info["meta"] == {"Name": "memfs", "Type": "file", "Content": None}


def test_put_replaces_whole_file_ignoring_offset(client: httpx.Client, ws: str) -> None:
    p = f"{ws}/f"
    client.put("/files", params={"path": p}, content=b"0123456789")
    client.put("/files", params={"path": p, "offset": "3", "flags": "8"}, content=b"ab")
    assert client.get("/files", params={"path": p}).content == b"ab"


@pytest.mark.parametrize(
    "offset,size,expected",
    [
        (None, None, b"0123456789"),
        ("2", "3", b"234"),
        ("8", "10", b"89"),
        ("10", "5", b""),
        ("50", None, b""),
        ("3", "-1", b"3456789"),
        ("-5", "2", b"01"),
        ("0", "0", b""),
    ],
)
def test_ranged_reads(client: httpx.Client, ws: str, offset, size, expected) -> None:  # type: ignore[no-untyped-def]
    p = f"{ws}/r"
    client.put("/files", params={"path": p}, content=b"0123456789")
    params = {"path": p}
    if offset is not None:
        params["offset"] = offset
    if size is not None:
        params["size"] = size
    r = client.get("/files", params=params, headers={"Range": "bytes=0-1"})
    assert r.status_code == 200  # no Range support: the header is ignored
    assert r.content == expected


def test_create_file_and_conflicts(client: httpx.Client, ws: str) -> None:
    r = client.post("/files", params={"path": f"{ws}/new"})
    assert r.status_code == 201 and r.json() == {"message": "file created"}
    assert client.get("/stat", params={"path": f"{ws}/new"}).json()["size"] == 0
    r = client.post("/files", params={"path": f"{ws}/new"})
    assert r.status_code == 500
    assert err(r) == f"file already exists: /{ws.split('/')[2]}/new"


def test_messages_use_paths_relative_to_the_mount(client: httpx.Client, ws: str) -> None:
    rel = ws.removeprefix("/memfs")
    r = client.get("/files", params={"path": f"{ws}/missing"})
    assert r.status_code == 500 and err(r) == f"no such file or directory: {rel}/missing"
    r = client.get("/files", params={"path": ws})
    assert r.status_code == 500 and err(r) == f"is a directory: {rel}"
    r = client.get("/directories", params={"path": f"{ws}/missing"})
    assert err(r) == f"no such file or directory: {rel}/missing"
    client.put("/files", params={"path": f"{ws}/f"}, content=b"1")
    r = client.get("/directories", params={"path": f"{ws}/f"})
    assert err(r) == f"not a directory: {rel}/f"
    r = client.put("/files", params={"path": f"{ws}/nodir/f"}, content=b"1")
    assert r.status_code == 500 and err(r) == f"no such file or directory: {rel}/nodir"


def test_empty_directory_lists_null(client: httpx.Client, ws: str) -> None:
    r = client.get("/directories", params={"path": ws})
    assert r.status_code == 200
    assert r.json() == {"files": None}
    assert r.content == b'{"files":null}\n'


def test_listing_and_mkdir_modes(client: httpx.Client, ws: str) -> None:
    assert client.post("/directories", params={"path": f"{ws}/d1"}).json() == {
        "message": "directory created"
    }
    assert (
        client.post("/directories", params={"path": f"{ws}/d2", "mode": "700"}).status_code == 201
    )
    r = client.post("/directories", params={"path": f"{ws}/d3", "mode": "0o755"})
    assert r.status_code == 400 and err(r) == "invalid mode"
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    files = {f["name"]: f for f in client.get("/directories", params={"path": ws}).json()["files"]}
    assert set(files) == {"d1", "d2", "f"}
    for f in files.values():
        check_file_info(f)
    assert files["d1"]["mode"] == 0o755 and files["d1"]["isDir"] is True
    assert files["d1"]["meta"]["Type"] == "dir"
    assert files["d2"]["mode"] == 0o700
    assert files["f"]["size"] == 3 and files["f"]["meta"]["Type"] == "file"
    r = client.post("/directories", params={"path": f"{ws}/d1"})
    assert r.status_code == 500 and err(r).startswith("directory already exists: ")


def test_delete_file_dir_and_recursive(client: httpx.Client, ws: str) -> None:
    client.post("/directories", params={"path": f"{ws}/d"})
    client.put("/files", params={"path": f"{ws}/d/f"}, content=b"1")
    r = client.delete("/directories", params={"path": f"{ws}/d"})
    assert r.status_code == 500 and err(r).startswith("directory not empty: ")
    assert client.delete("/files", params={"path": f"{ws}/d/f"}).json() == {"message": "deleted"}
    assert client.delete("/directories", params={"path": f"{ws}/d"}).status_code == 200
    client.post("/directories", params={"path": f"{ws}/t"})
    client.put("/files", params={"path": f"{ws}/t/f"}, content=b"1")
    r = client.delete("/files", params={"path": f"{ws}/t", "recursive": "true"})
    assert r.status_code == 200
    assert client.get("/directories", params={"path": ws}).json() == {"files": None}
    r = client.delete("/files", params={"path": f"{ws}/gone"})
    assert r.status_code == 500 and "no such file or directory" in err(r)


def test_memfs_rename_refuses_existing_target(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/a"}, content=b"A")
    client.put("/files", params={"path": f"{ws}/b"}, content=b"B")
    r = client.post("/rename", params={"path": f"{ws}/a"}, json={"newPath": f"{ws}/b"})
    assert r.status_code == 500
    assert err(r) == f"file already exists: {ws.removeprefix('/memfs')}/b"
    r = client.post("/rename", params={"path": f"{ws}/a"}, json={"newPath": f"{ws}/c"})
    assert r.status_code == 200 and r.json() == {"message": "renamed"}
    assert client.get("/files", params={"path": f"{ws}/c"}).content == b"A"
    assert client.get("/stat", params={"path": f"{ws}/a"}).status_code == 500


def test_rename_across_mounts_and_outside_mounts(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/a"}, content=b"A")
    r = client.post("/rename", params={"path": f"{ws}/a"}, json={"newPath": "/queuefs/x"})
    assert r.status_code == 500 and err(r) == "cannot rename across different mounts"
    r = client.post("/rename", params={"path": f"{ws}/a"}, json={"newPath": "/elsewhere"})
    assert r.status_code == 500
    assert err(r) == "cannot rename: paths not in same mounted filesystem"


def test_chmod_stores_mode_as_given(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"1")
    r = client.post("/chmod", params={"path": f"{ws}/f"}, json={"mode": 0o4750})
    assert r.status_code == 200 and r.json() == {"message": "permissions changed"}
    assert client.get("/stat", params={"path": f"{ws}/f"}).json()["mode"] == 0o4750


def test_truncate(client: httpx.Client, ws: str) -> None:
    p = f"{ws}/f"
    client.put("/files", params={"path": p}, content=b"0123456789")
    assert client.post("/truncate", params={"path": p, "size": "4"}).json() == {
        "message": "truncated"
    }
    assert client.get("/files", params={"path": p}).content == b"0123"
    client.post("/truncate", params={"path": p, "size": "6"})
    assert client.get("/files", params={"path": p}).content == b"0123\0\0"
    r = client.post("/truncate", params={"path": p})
    assert r.status_code == 400 and err(r) == "size parameter is required"
    r = client.post("/truncate", params={"path": p, "size": "-1"})
    assert r.status_code == 400 and err(r) == "size must be non-negative"
    r = client.post("/truncate", params={"path": "/nowhere", "size": "1"})
    assert r.status_code == 404 and err(r) == "truncate: /nowhere: not found"


def test_touch_creates_missing_but_fails_on_existing(client: httpx.Client, ws: str) -> None:
    p = f"{ws}/t"
    r = client.post("/touch", params={"path": p})
    assert r.status_code == 200 and r.json() == {"message": "touched"}
    assert client.get("/stat", params={"path": p}).json()["size"] == 0
    r = client.post("/touch", params={"path": p})
    assert r.status_code == 500 and err(r) == "EOF"  # the real server's bug
    client.put("/files", params={"path": p}, content=b"data")
    assert err(client.post("/touch", params={"path": p})) == "EOF"
    assert client.get("/files", params={"path": p}).content == b"data"
    r = client.post("/touch", params={"path": ws})
    assert r.status_code == 500 and err(r) == "cannot touch directory"


def test_virtual_root_and_mount_points(client: httpx.Client) -> None:
    files = client.get("/directories", params={"path": "/"}).json()["files"]
    assert [f["name"] for f in files] == ["dev", "memfs", "queuefs"]
    for f in files:
        check_file_info(f)
        assert f["isDir"] and f["mode"] == 0o755 and f["size"] == 0
        assert f["meta"] == {"Name": "rootfs", "Type": "mount-point", "Content": None}
    assert client.get("/directories").json()["files"] == files or True  # path defaults to /
    root = client.get("/stat", params={"path": "/"}).json()
    assert root["name"] == "/" and root["isDir"] and root["meta"]["Type"] == "root"
    mp = client.get("/stat", params={"path": "/memfs"}).json()
    assert mp["name"] == "memfs" and mp["mode"] == 493
    assert mp["meta"] == {"Name": "memfs", "Type": "dir", "Content": None}
    r = client.get("/stat", params={"path": "/nothing"})
    assert r.status_code == 404 and err(r) == "stat: /nothing: not found"
    r = client.get("/directories", params={"path": "/nothing"})
    assert r.status_code == 404 and err(r) == "readdir: /nothing: not found"
    r = client.get("/files", params={"path": "/"})
    assert r.status_code == 404 and err(r) == "read: /: not found"


def test_creating_at_the_virtual_root(client: httpx.Client) -> None:
    r = client.post("/files", params={"path": "/x"})
    assert r.status_code == 403
    assert err(r) == (
        "create: /x: permission denied (not allowed to create file in rootfs, use mount instead)"
    )
    r = client.post("/directories", params={"path": "/x"})
    assert r.status_code == 403
    assert err(r) == (
        "mkdir: /x: permission denied (not allowed to create directory in rootfs, use mount "
        "instead)"
    )
    r = client.put("/files", params={"path": "/x"}, content=b"1")
    assert r.status_code == 404 and err(r) == "write: /x: not found"
    r = client.post("/touch", params={"path": "/x"})
    assert r.status_code == 404 and err(r) == "touch: /x: not found"
    r = client.delete("/files", params={"path": "/x"})
    assert r.status_code == 404 and err(r) == "remove: /x: not found"


def test_stream_is_404_on_memfs_even_if_file_exists(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    r = client.get("/files", params={"path": f"{ws}/f", "stream": "true"})
    assert r.status_code == 404
    assert err(r) == f"filesystem does not support streaming: {ws}/f"


def test_path_normalisation(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    rel = ws.removeprefix("/")
    assert client.get("/files", params={"path": f"{rel}/./x/../f"}).content == b"abc"
    assert client.get("/stat", params={"path": f"{ws}/"}).json()["isDir"] is True


def test_memfs_readme(client: httpx.Client) -> None:
    info = client.get("/stat", params={"path": "/memfs/README"}).json()
    assert info["mode"] == 0o444 and info["size"] > 0
    assert client.get("/files", params={"path": "/memfs/README"}).content.startswith(b"MemFS")


def test_devfs_null(client: httpx.Client) -> None:
    files = client.get("/directories", params={"path": "/dev"}).json()["files"]
    assert [(f["name"], f["mode"], f["meta"]["Type"]) for f in files] == [("null", 0o666, "device")]
    assert client.put("/files", params={"path": "/dev/null"}, content=b"x").status_code == 200
    assert client.get("/files", params={"path": "/dev/null"}).content == b""
    dev = client.get("/stat", params={"path": "/dev"}).json()
    assert dev["name"] == "dev" and dev["mode"] == 0o555
    r = client.post("/files", params={"path": "/dev/x"})
    assert r.status_code == 500 and err(r) == "read-only filesystem"


def test_digest_md5_fails_with_eof_on_memfs(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    r = client.post("/digest", json={"algorithm": "md5", "path": f"{ws}/f"})
    assert r.status_code == 500 and err(r) == "failed to calculate digest: EOF"
    r = client.post("/digest", json={"algorithm": "sha1", "path": f"{ws}/f"})
    assert r.status_code == 400
    assert err(r) == "unsupported algorithm: sha1 (supported: xxh3, md5)"
    r = client.post("/digest", json={"algorithm": "md5", "path": "/dev/null"})
    assert r.json()["digest"] == hashlib.md5(b"").hexdigest()


def test_grep(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/a"}, content=b"one\ntwo\nthree\n")
    client.post("/directories", params={"path": f"{ws}/d"})
    client.put("/files", params={"path": f"{ws}/d/b"}, content=b"TWO\r\n")
    r = client.post("/grep", json={"path": f"{ws}/a", "pattern": "t"})
    assert r.json()["count"] == 2
    assert r.json()["matches"][0] == {"file": f"{ws}/a", "line": 2, "content": "two"}
    r = client.post("/grep", json={"path": ws, "pattern": "two", "case_insensitive": True})
    assert r.status_code == 400
    r = client.post(
        "/grep", json={"path": ws, "pattern": "two", "case_insensitive": True, "recursive": True}
    )
    assert sorted(m["content"] for m in r.json()["matches"]) == ["TWO", "two"]
    r = client.post("/grep", json={"path": f"{ws}/a", "pattern": "zzz"})
    assert r.json() == {"matches": None, "count": 0}
