"""Async write-back per backend, without a server or a kernel: what the config file and
``.mounts`` accept for ``async_upload``, and which paths' uploads the settings leave to the
background (a backend's own flag, else the mount-wide ``-o async_upload``; never outside
every backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agfs_fuse.backends import BackendTable
from agfs_fuse.federation_config import Federation, FederationError, load_config, parse_mount_line
from agfs_fuse.options import MountOptions, parse_options
from agfs_fuse.path_settings import DEFAULT_SETTINGS, CacheTimeouts, ConstantSettings
from agfs_fuse.stats import RequestStats

pytestmark = pytest.mark.timeout(20)

CONFIG = """
backends:
  /lazy:
    url: http://lazy:8080
    async_upload: true
  /eager:
    url: http://eager:8080
    async_upload: false
  /plain: http://plain:8080
"""


def _federation(tmp_path: Path, cli: list[str] | None = None, text: str = CONFIG) -> Federation:
    config = tmp_path / "fed.yaml"
    config.write_text(text)
    return load_config(config, cli or [])


def _table(federation: Federation) -> BackendTable:
    def maker(spec: Any, stats: RequestStats) -> Any:
        return lambda url: object()  # no request is made here

    table = BackendTable(RequestStats(), maker)
    for spec in federation.backends:
        table.add(table.build(spec))
    return table


def _async_of(federation: Federation) -> dict[str, bool]:
    return {spec.prefix: spec.options.async_upload for spec in federation.backends}


def test_a_backend_sets_async_upload_and_the_others_take_the_mount_wide_default(
    tmp_path: Path,
) -> None:
    assert _async_of(_federation(tmp_path)) == {"/lazy": True, "/eager": False, "/plain": False}
    everywhere = _federation(tmp_path, cli=["async_upload"])
    assert _async_of(everywhere) == {"/lazy": True, "/eager": False, "/plain": True}


@pytest.mark.parametrize("value", ["maybe", "[1]", "2"])
def test_a_bad_async_upload_is_one_line_naming_the_backend(tmp_path: Path, value: str) -> None:
    text = f"backends:\n  /dc1:\n    url: http://h:1\n    async_upload: {value}\n"
    with pytest.raises(FederationError, match="async_upload must be true or false") as error:
        _federation(tmp_path, text=text)
    assert "/dc1" in str(error.value) and "\n" not in str(error.value)


def test_a_mounts_line_takes_async_upload_as_a_flag_or_a_value() -> None:
    bare = parse_mount_line(["/dc3", "http://h:1", "async_upload"], MountOptions(), [])
    assert bare.options.async_upload
    mount_wide = parse_options(["async_upload"])
    assert parse_mount_line(["/dc4", "http://h:1"], mount_wide, []).options.async_upload
    off = parse_mount_line(["/dc5", "http://h:1", "async_upload=false"], mount_wide, [])
    assert not off.options.async_upload
    with pytest.raises(FederationError, match="async_upload must be true or false"):
        parse_mount_line(["/dc6", "http://h:1", "async_upload=soon"], MountOptions(), [])


def test_the_table_answers_by_path_and_never_outside_every_backend(tmp_path: Path) -> None:
    table = _table(_federation(tmp_path, cli=["async_upload"]))
    assert table.async_upload("/lazy/a/b") and table.async_upload("/plain/f")
    assert not table.async_upload("/eager/f")
    for outside in ("/", "/.mounts", "/.agfs-sync", "/gone/f"):
        assert not table.async_upload(outside), outside
    assert table.any_async_upload()


def test_a_backend_mounted_at_run_time_brings_its_async_upload(tmp_path: Path) -> None:
    table = _table(_federation(tmp_path, text="backends:\n  /eager: http://eager:1\n"))
    assert not table.any_async_upload()
    spec = parse_mount_line(["/late", "http://late:1", "async_upload"], MountOptions(), [])
    table.add(table.build(spec))
    assert table.async_upload("/late/f") and not table.async_upload("/eager/f")
    assert table.any_async_upload()
    table.remove("/late")
    assert not table.async_upload("/late/f") and not table.any_async_upload()


def test_a_single_server_mount_answers_its_option_everywhere() -> None:
    on = ConstantSettings(CacheTimeouts(), async_everywhere=True)
    assert on.async_upload("/") and on.async_upload("/a/b") and on.any_async_upload()
    assert not DEFAULT_SETTINGS.async_upload("/a/b") and not DEFAULT_SETTINGS.any_async_upload()
