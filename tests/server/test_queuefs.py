"""queuefs: control files, the JSON envelope, destructive dequeue."""

from __future__ import annotations

import itertools
import json

import httpx

from tests.server.helpers import RFC3339NANO, check_file_info, err

_q = itertools.count()


def _queue(client: httpx.Client) -> str:
    q = f"/queuefs/q{next(_q)}"
    r = client.post("/directories", params={"path": q})
    assert r.status_code == 201
    return q


def test_mkdir_twice_is_fine(client: httpx.Client) -> None:
    q = _queue(client)
    assert client.post("/directories", params={"path": q}).status_code == 201
    info = client.get("/stat", params={"path": q}).json()
    assert info["meta"] == {"Name": "queuefs", "Type": "queue", "Content": None}


def test_control_files(client: httpx.Client) -> None:
    q = _queue(client)
    files = {f["name"]: f for f in client.get("/directories", params={"path": q}).json()["files"]}
    assert list(files) == ["enqueue", "dequeue", "peek", "size", "clear"]
    for f in files.values():
        check_file_info(f)
    assert {n: f["mode"] for n, f in files.items()} == {
        "enqueue": 0o222,
        "dequeue": 0o444,
        "peek": 0o444,
        "size": 0o444,
        "clear": 0o222,
    }
    assert {n: f["meta"]["Type"] for n, f in files.items()} == {
        "enqueue": "control",
        "dequeue": "control",
        "peek": "control",
        "size": "status",
        "clear": "control",
    }
    assert files["dequeue"]["size"] == 0 and files["size"]["size"] == 1


def test_envelope_and_destructive_dequeue(client: httpx.Client) -> None:
    q = _queue(client)
    for m in (b"m1", b"<m&2>", b"\xff\xfe"):
        assert client.put("/files", params={"path": f"{q}/enqueue"}, content=m).status_code == 200
    size = client.get("/files", params={"path": f"{q}/size"})
    assert size.content == b"3"
    assert client.get("/stat", params={"path": f"{q}/size"}).json()["size"] == 1
    peek = client.get("/files", params={"path": f"{q}/peek"}).content
    first = client.get("/files", params={"path": f"{q}/dequeue"}).content
    assert peek == first and not first.endswith(b"\n")
    msg = json.loads(first)
    assert list(msg) == ["id", "data", "timestamp"] and msg["data"] == "m1"
    assert msg["id"][14] == "7"  # UUIDv7
    assert RFC3339NANO.match(msg["timestamp"])
    second = client.get("/files", params={"path": f"{q}/dequeue", "offset": "0", "size": "5"})
    assert second.content == b'{"id"'  # a ranged read pops a whole message too
    third = client.get("/files", params={"path": f"{q}/dequeue"}).content
    assert b'"data":"\\ufffd\\ufffd"' in third  # each invalid byte: Go's \ufffd escape
    assert client.get("/files", params={"path": f"{q}/dequeue"}).content == b"{}"
    assert client.get("/files", params={"path": f"{q}/size"}).content == b"0"


def test_html_escaping_like_go(client: httpx.Client) -> None:
    q = _queue(client)
    client.put("/files", params={"path": f"{q}/enqueue"}, content=b"<a&b>")
    raw = client.get("/files", params={"path": f"{q}/dequeue"}).content
    assert b'"data":"\\u003ca\\u0026b\\u003e"' in raw


def test_write_only_files(client: httpx.Client) -> None:
    q = _queue(client)
    rel = q.removeprefix("/queuefs")
    for name in ("enqueue", "clear"):
        r = client.get("/files", params={"path": f"{q}/{name}"})
        assert r.status_code == 500
        assert err(r) == f"permission denied: {rel}/{name} is write-only"


def test_clear_and_empty_unknown_queue(client: httpx.Client) -> None:
    q = _queue(client)
    client.put("/files", params={"path": f"{q}/enqueue"}, content=b"x")
    r = client.put("/files", params={"path": f"{q}/clear"}, content=b"")
    assert r.json() == {"message": "Written 0 bytes"}
    assert client.get("/files", params={"path": f"{q}/size"}).content == b"0"
    assert client.get("/files", params={"path": "/queuefs/never/dequeue"}).content == b"{}"


def test_enqueue_creates_queue_and_root_listing(client: httpx.Client) -> None:
    name = f"auto{next(_q)}"
    client.put("/files", params={"path": f"/queuefs/{name}/enqueue"}, content=b"x")
    files = {
        f["name"]: f
        for f in client.get("/directories", params={"path": "/queuefs"}).json()["files"]
    }
    assert files["README"]["meta"]["Type"] == "doc" and files["README"]["mode"] == 0o444
    assert files[name]["meta"] == {"Name": "queuefs", "Type": "queue", "Content": None}
    root = client.get("/stat", params={"path": "/queuefs"}).json()
    assert root["name"] == "queuefs"
    assert root["meta"] == {"Name": "queuefs", "Type": "", "Content": {"backend": "memory"}}


def test_unsupported_operations(client: httpx.Client) -> None:
    q = _queue(client)
    r = client.post("/rename", params={"path": f"{q}/peek"}, json={"newPath": f"{q}/x"})
    assert err(r) == "cannot rename files in queuefs service"
    assert client.post("/truncate", params={"path": f"{q}/enqueue", "size": "0"}).status_code == 200
    r = client.delete("/files", params={"path": f"{q}/peek"})
    assert err(r) == f"cannot remove control files: {q.removeprefix('/queuefs')}/peek"
    assert client.delete("/files", params={"path": q, "recursive": "true"}).status_code == 200
    assert client.get("/stat", params={"path": q}).status_code == 500


def test_queue_handles_read_once(client: httpx.Client) -> None:
    q = _queue(client)
    client.put("/files", params={"path": f"{q}/enqueue"}, content=b"a")
    client.put("/files", params={"path": f"{q}/enqueue"}, content=b"b")
    hid = client.post("/handles/open", params={"path": f"{q}/dequeue", "flags": "0"}).json()[
        "handle_id"
    ]
    one = client.get(f"/handles/{hid}/read", params={"offset": "0", "size": "4096"}).content
    again = client.get(f"/handles/{hid}/read", params={"offset": "0", "size": "4096"}).content
    assert one == again and json.loads(one)["data"] == "a"
    assert client.get("/files", params={"path": f"{q}/size"}).content == b"1"
    w = client.post("/handles/open", params={"path": f"{q}/enqueue", "flags": "1"}).json()
    client.put(f"/handles/{w['handle_id']}/write", content=b"c")
    assert client.get("/files", params={"path": f"{q}/size"}).content == b"2"
    for h in (hid, w["handle_id"]):
        assert client.delete(f"/handles/{h}").status_code == 200
