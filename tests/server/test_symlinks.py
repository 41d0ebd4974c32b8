"""Virtual symlinks kept in server memory."""

from __future__ import annotations

import httpx

from tests.server.helpers import check_file_info, err


def test_symlink_stat_readlink_listing(client: httpx.Client, ws: str) -> None:
    client.post("/directories", params={"path": f"{ws}/dir"})
    client.put("/files", params={"path": f"{ws}/dir/f"}, content=b"data")
    r = client.post("/symlink", params={"path": f"{ws}/ln"}, json={"target": "dir"})
    assert r.status_code == 201 and r.json() == {"message": "symlink created"}
    info = client.get("/stat", params={"path": f"{ws}/ln"}).json()
    check_file_info(info)
    assert info["name"] == "ln" and info["size"] == 3 and info["mode"] == 0o777
    assert info["isDir"] is True and info["meta"]["Type"] == "symlink"
    assert client.get("/readlink", params={"path": f"{ws}/ln"}).json() == {"target": "dir"}
    entry = {f["name"]: f for f in client.get("/directories", params={"path": ws}).json()["files"]}
    assert entry["ln"]["size"] == 0 and entry["ln"]["isDir"] is True
    assert entry["ln"]["meta"]["Type"] == "symlink"
    # reads, writes and listings follow the link
    assert client.get("/files", params={"path": f"{ws}/ln/f"}).content == b"data"
    client.put("/files", params={"path": f"{ws}/ln/g"}, content=b"new")
    assert client.get("/files", params={"path": f"{ws}/dir/g"}).content == b"new"


def test_symlink_to_file_and_dangling(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    client.post("/symlink", params={"path": f"{ws}/lf"}, json={"target": f"{ws}/f"})
    assert client.get("/stat", params={"path": f"{ws}/lf"}).json()["isDir"] is False
    assert client.get("/files", params={"path": f"{ws}/lf"}).content == b"abc"
    client.post("/symlink", params={"path": f"{ws}/dangling"}, json={"target": "nowhere"})
    assert client.get("/stat", params={"path": f"{ws}/dangling"}).json()["isDir"] is False


def test_duplicate_and_existing_is_409(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    client.post("/symlink", params={"path": f"{ws}/l"}, json={"target": "f"})
    r = client.post("/symlink", params={"path": f"{ws}/l"}, json={"target": "f"})
    assert r.status_code == 409 and err(r) == f"symlink already exists: {ws}/l"
    r = client.post("/symlink", params={"path": f"{ws}/f"}, json={"target": "x"})
    assert r.status_code == 409
    r = client.post("/symlink", params={"path": f"{ws}/l2"}, json={})
    assert r.status_code == 400 and err(r) == "target is required"
    r = client.post("/symlink", params={"path": f"{ws}/no/l"}, json={"target": "x"})
    assert r.status_code == 500 and err(r) == f"parent directory does not exist: {ws}/no"


def test_links_cannot_be_renamed_and_delete_removes_the_link(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    client.post("/symlink", params={"path": f"{ws}/l"}, json={"target": "f"})
    r = client.post("/rename", params={"path": f"{ws}/l"}, json={"newPath": f"{ws}/m"})
    assert r.status_code == 500 and "no such file or directory" in err(r)
    assert client.delete("/files", params={"path": f"{ws}/l"}).status_code == 200
    assert client.get("/files", params={"path": f"{ws}/f"}).content == b"abc"
    r = client.get("/readlink", params={"path": f"{ws}/l"})
    assert r.status_code == 404 and err(r) == f"readlink: {ws}/l: not found"


def test_symlink_at_virtual_root(client: httpx.Client, ws: str) -> None:
    name = "/rootlink-" + ws.rsplit("/", 1)[1]
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    assert client.post("/symlink", params={"path": name}, json={"target": ws}).status_code == 201
    names = [f["name"] for f in client.get("/directories", params={"path": "/"}).json()["files"]]
    assert name[1:] in names
    assert client.get("/files", params={"path": f"{name}/f"}).content == b"abc"
    assert client.delete("/files", params={"path": name}).status_code == 200
