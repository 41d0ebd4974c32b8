"""The mount raises the kernel's readahead for itself, found through mountinfo."""

from __future__ import annotations

from pathlib import Path

from agfs_fuse.mount import READ_AHEAD_KB, raise_readahead


def _layout(tmp_path: Path, mountpoint: str, current: int) -> tuple[Path, Path]:
    mountinfo = tmp_path / "mountinfo"
    escaped = mountpoint.replace(" ", "\\040")
    mountinfo.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"45 27 0:40 / {escaped} rw,nosuid - fuse.agfs http://h:8080 rw,user_id=0\n"
    )
    knob = tmp_path / "bdi" / "0:40" / "read_ahead_kb"
    knob.parent.mkdir(parents=True)
    knob.write_text(f"{current}\n")
    return mountinfo, knob


def test_readahead_is_raised_for_the_mounts_device(tmp_path: Path) -> None:
    mountpoint = str(tmp_path / "mnt with space")
    mountinfo, knob = _layout(tmp_path, mountpoint, 128)
    assert raise_readahead(mountpoint, str(mountinfo), str(tmp_path / "bdi")) == READ_AHEAD_KB
    assert knob.read_text().strip() == str(READ_AHEAD_KB)


def test_readahead_is_never_lowered(tmp_path: Path) -> None:
    mountpoint = str(tmp_path / "mnt")
    mountinfo, knob = _layout(tmp_path, mountpoint, 4096)
    assert raise_readahead(mountpoint, str(mountinfo), str(tmp_path / "bdi")) is None
    assert knob.read_text().strip() == "4096"


def test_unknown_mountpoint_or_unwritable_knob_changes_nothing(tmp_path: Path) -> None:
    mountinfo, knob = _layout(tmp_path, str(tmp_path / "mnt"), 128)
    assert (
        raise_readahead(str(tmp_path / "elsewhere"), str(mountinfo), str(tmp_path / "bdi")) is None
    )
    assert raise_readahead(str(tmp_path / "mnt"), str(mountinfo), str(tmp_path / "none")) is None
    assert knob.read_text().strip() == "128"
