"""Worker processes of the load tests, run as ``python _workers.py ROLE JSON-ARGS``.

Each role is a real process doing real system calls on the mount, as programs do; it prints
one JSON line of results on stdout and exits 0, or prints what went wrong on stderr and
exits 1. This file has no dependency on the project or on pytest (it runs from its path).

Roles:

- ``writer``: writes its files into its own directory: content from a seeded PRNG, written
  to ``NAME.tmp`` (sequential chunks, reversed ``pwrite`` chunks, or chunks with an
  ``fsync`` in the middle), closed, then renamed to ``NAME`` (the usual atomic publish); one
  manifest line ``name size sha256`` per published file, after the rename.
- ``reader``: until the stop file appears, reads published files (from the manifests) in
  full through the mount and compares their sha256; lists writer directories and checks
  that every file published before the listing is in it and nothing unexpected is.
- ``verify``: reads a list of files through the mount and checks size and sha256.
- ``renamer``: renames its own files (between two directories, to new names, and over its
  other files), keeping a model of where each one is; prints the final name -> content map.
- ``lister``: runs ``ls -l`` on directories in a loop until the stop file appears, checking
  every listing: exit status 0, or 1 with only "No such file or directory" complaints (an
  entry renamed between readdir and lstat), and every line well-formed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

CHUNK_CHOICES = (4096, 65536, 131072, 1 << 20)


def content(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def small_content(ident: int) -> bytes:
    """Content of the renamer's file ``ident``: its size and bytes say who it is."""
    return (f"file {ident:05d};" * (ident % 37 + 3)).encode()


# -- writer ------------------------------------------------------------------------------


def file_names(writer_id: int, sizes: list[int]) -> list[str]:
    return [f"w{writer_id}-f{index:03d}-{size}" for index, size in enumerate(sizes)]


def write_file(path: Path, data: bytes, style: str, rng: random.Random) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk = rng.choice(CHUNK_CHOICES)
        pieces = [(off, data[off : off + chunk]) for off in range(0, len(data), chunk)]
        if style == "reverse":
            for off, piece in reversed(pieces):
                os.pwrite(fd, piece, off)
        else:
            for index, (_, piece) in enumerate(pieces):
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
                if style == "fsync" and index == len(pieces) // 2:
                    os.fsync(fd)
    finally:
        os.close(fd)


def writer(args: dict) -> dict:
    directory = Path(args["dir"])
    manifest = os.open(args["manifest"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rng = random.Random(args["seed"])
    total = 0
    styles: dict[str, int] = {}
    for name, size in zip(file_names(args["id"], args["sizes"]), args["sizes"], strict=True):
        data = content(f"{args['seed']}:{name}", size)
        style = rng.choice(("seq", "seq", "reverse", "fsync"))
        styles[style] = styles.get(style, 0) + 1
        tmp = directory / f"{name}.tmp"
        write_file(tmp, data, style, rng)
        os.rename(tmp, directory / name)
        digest = hashlib.sha256(data).hexdigest()
        os.write(manifest, f"{name} {size} {digest}\n".encode())
        total += size
    os.close(manifest)
    return {"files": len(args["sizes"]), "bytes": total, "styles": styles}


# -- reader ------------------------------------------------------------------------------


def read_manifest(path: str) -> list[tuple[str, int, str]]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # the last piece may be a line being written
    out = []
    for line in lines:
        name, size, digest = line.split(" ")
        out.append((name, int(size), digest))
    return out


def sha256_of(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while True:
            block = fh.read(1 << 20)
            if not block:
                break
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


def reader(args: dict) -> dict:
    rng = random.Random(args["seed"])
    stop = Path(args["stop"])
    writers = [(w["dir"], w["manifest"]) for w in args["writers"]]
    planned_names: dict[str, set[str]] = {}
    for w in args["writers"]:
        planned_names.setdefault(w["dir"], set()).update(file_names(w["id"], w["sizes"]))
    files = 0
    nbytes = 0
    listings = 0
    errors: list[str] = []
    while not stop.exists() and len(errors) < 20:
        directory, manifest = rng.choice(writers)
        published = read_manifest(manifest)
        if rng.random() < 0.2:
            names = set(os.listdir(directory))
            listings += 1
            missing = {n for n, _, _ in published} - names
            if missing:
                errors.append(f"listing of {directory} lacks published {sorted(missing)[:5]}")
            planned = planned_names[directory]
            strange = {
                n for n in names if n not in planned and n.removesuffix(".tmp") not in planned
            }
            if strange:
                errors.append(f"listing of {directory} has unexpected {sorted(strange)[:5]}")
            continue
        if not published:
            time.sleep(0.01)
            continue
        # prefer recent files (likely still in the writer's hands a moment ago)
        name, size, digest = published[-1 - int(rng.expovariate(0.1)) % len(published)]
        got_size, got = sha256_of(Path(directory) / name)
        files += 1
        nbytes += got_size
        if (got_size, got) != (size, digest):
            errors.append(
                f"{directory}/{name}: read {got_size} bytes sha {got}, want {size} {digest}"
            )
    return {"files": files, "bytes": nbytes, "listings": listings, "errors": errors}


def verify(args: dict) -> dict:
    errors = []
    nbytes = 0
    for path, size, digest in args["files"]:
        st = os.stat(path)
        got_size, got = sha256_of(Path(path))
        nbytes += got_size
        if (st.st_size, got_size, got) != (size, size, digest):
            errors.append(
                f"{path}: stat {st.st_size}, read {got_size} sha {got}, want {size} {digest}"
            )
    return {"files": len(args["files"]), "bytes": nbytes, "errors": errors}


# -- renamer and lister ---------------------------------------------------------------------


def renamer(args: dict) -> dict:
    """Files ``ids`` start at ``dirs[0]/n{id}-g0``; each step moves one of them."""
    rng = random.Random(args["seed"])
    dirs = args["dirs"]
    where = {i: (dirs[0], f"n{i:05d}-g0") for i in args["ids"]}  # id -> (dir, name)
    content_of = {i: i for i in args["ids"]}  # id -> whose content the file holds
    deadline = time.monotonic() + args["seconds"]
    renames = replaces = 0
    gen = 0
    keep = max(2, len(where) * 3 // 4)  # replaces retire at most a quarter of the files
    while time.monotonic() < deadline:
        gen += 1
        ident = rng.choice(sorted(where))
        src = os.path.join(*where[ident])
        if len(where) > keep and rng.random() < 0.1:
            # over another of our files: it is replaced, its id retires
            victim = rng.choice([i for i in where if i != ident])
            dst = os.path.join(*where[victim])
            os.rename(src, dst)
            where[ident] = where.pop(victim)
            content_of.pop(victim)
            replaces += 1
        else:
            target = (rng.choice(dirs), f"n{ident:05d}-g{gen}")
            os.rename(src, os.path.join(*target))
            where[ident] = target
            renames += 1
    final = {os.path.join(*place): content_of[i] for i, place in where.items()}
    return {"renames": renames, "replaces": replaces, "final": final}


LS_LINE = re.compile(
    r"^(?P<mode>[-dl][-rwxsStT]{9})\S*\s+\d+\s+\S+\s+\S+\s+(?P<size>\d+)\s+"
    r"\S+\s+\d+\s+[\d:]+\s+(?P<name>n\d{5}-g\d+)$"
)
#: What ``ls -l`` prints for an entry renamed away while it looked at it: ``cannot access``
#: when its ``statx`` lost the race, and (GNU ls 9.1) the bare name when the ``statx`` won but
#: the ``getxattr`` that follows (ACL/SELinux check) lost it. The listed directories are
#: absolute paths, so a message about anything else (the directory itself) never matches.
LS_ENOENT = re.compile(r"^ls: (cannot access )?(?P<path>'/.*'|/.*): No such file or directory$")


def lister(args: dict) -> dict:
    stop = Path(args["stop"])
    sizes = set(args["sizes"])
    runs = races = lines = 0
    errors: list[str] = []
    env = dict(os.environ, LC_ALL="C")
    while not stop.exists() and len(errors) < 20:
        for directory in args["dirs"]:
            proc = subprocess.run(
                ["ls", "-l", directory], capture_output=True, text=True, env=env, timeout=60
            )
            runs += 1
            out = proc.stdout.splitlines()
            err = proc.stderr.splitlines()
            if proc.returncode not in (0, 1) or (proc.returncode == 1 and not err):
                errors.append(f"ls -l {directory} exited {proc.returncode}: {proc.stderr!r}")
            bad_err = [e for e in err if not LS_ENOENT.match(e)]
            if bad_err:
                errors.append(f"ls -l {directory}: unexpected errors {bad_err[:3]}")
            races += len(err) - len(bad_err)
            if not out or not out[0].startswith("total "):
                errors.append(f"ls -l {directory}: no 'total' line: {out[:3]}")
                continue
            for line in out[1:]:
                lines += 1
                match = LS_LINE.match(line)
                if match is None:
                    # an entry whose lstat lost the race is shown with '?' fields
                    if "?" in line and err:
                        continue
                    errors.append(f"ls -l {directory}: malformed line {line!r}")
                elif match["mode"][0] != "-" or int(match["size"]) not in sizes:
                    errors.append(f"ls -l {directory}: wrong type or size in {line!r}")
    return {"runs": runs, "enoent_races": races, "lines": lines, "errors": errors}


ROLES = {
    "writer": writer,
    "reader": reader,
    "verify": verify,
    "renamer": renamer,
    "lister": lister,
}


def main() -> int:
    role, raw = sys.argv[1], sys.argv[2]
    args = json.loads(Path(raw[1:]).read_text()) if raw.startswith("@") else json.loads(raw)
    try:
        result = ROLES[role](args)
    except Exception:
        traceback.print_exc()
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
