"""The federation's configuration, parsed without a server or a kernel: what is accepted,
what each backend gets, and the one-line error for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from agfs_fuse.federation_config import (
    FEDERATION_SOURCE,
    FederationError,
    check_prefix,
    from_maps,
    load_config,
    parse_mount_line,
)
from agfs_fuse.options import MountOptions, parse_options


def test_maps_give_each_prefix_its_url_and_the_mount_wide_options() -> None:
    options = parse_options(["timeout=7,header=X-A:1"])
    federation = from_maps(["/dc1=http://h1:8080", "/dc2/=https://h2/api/v1"], options)
    assert federation.source == FEDERATION_SOURCE
    (dc1, dc2) = federation.backends
    assert (dc1.prefix, dc1.url, dc1.root) == ("/dc1", "http://h1:8080/api/v1", "/")
    assert dc2.prefix == "/dc2" and dc2.url == "https://h2/api/v1"
    assert dc1.options.timeout == 7 and dc1.options.header == [("X-A", "1")]


@pytest.mark.parametrize(
    ("prefix", "says"),
    [
        ("dc1", "must start with /"),
        ("/", "mount root"),
        ("/a/b", "nested"),
        ("/..", "not a directory name"),
        ("/reload", "control file"),
        ("/.mounts", "control file"),
        ("/.agfs-sync", "control file"),
    ],
)
def test_bad_prefixes_are_refused_with_the_reason(prefix: str, says: str) -> None:
    with pytest.raises(FederationError, match=says):
        check_prefix(prefix)


def test_a_prefix_given_twice_and_a_mount_wide_root_are_refused() -> None:
    with pytest.raises(FederationError, match="given twice"):
        from_maps(["/a=http://h:1", "/a=http://h:2"], MountOptions())
    with pytest.raises(FederationError, match="per backend"):
        from_maps(["/a=http://h:1"], parse_options(["root=/memfs"]))
    with pytest.raises(FederationError, match="PREFIX=URL"):
        from_maps(["/a"], MountOptions())
    with pytest.raises(FederationError, match="/a"):
        from_maps(["/a=ftp://h"], MountOptions())


def test_a_config_file_sets_connection_settings_per_backend(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t\n")
    config = tmp_path / "fed.yaml"
    config.write_text(
        f"""
backends:
  /dc1: {{url: "http://dc1:8080/api/v1", root: /memfs, timeout: 4}}
  /dc2:
    url: https://dc2:8443
    cafile: {tmp_path}/ca.pem
    token_file: {token}
    headers: {{X-Team: blue}}
    insecure: false
  /dc3: http://dc3:8080
options: {{attr_timeout: 2, header: "X-All:1"}}
"""
    )
    federation = load_config(config, ["timeout=9"])
    assert federation.source == str(config)
    dc1, dc2, dc3 = federation.backends
    assert dc1.root == "/memfs" and dc1.options.timeout == 4
    assert dc2.options.timeout == 9  # the command line's -o is the default
    assert dc2.options.cafile == tmp_path / "ca.pem" and dc2.options.token_file == token
    assert dc2.options.header == [("X-All", "1"), ("X-Team", "blue")]
    assert dc1.options.cafile is None and dc1.options.token_file is None
    assert dc3.url == "http://dc3:8080/api/v1"
    assert federation.options.attr_timeout == 2


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("backends: {/a: {url: 'http://h:1'}}\nextra: 1\n", "unknown key 'extra'"),
        ("backends: {}\n", "backends must map"),
        ("backends: {/a: {url: 'http://h:1', tls: yes}}\n", "unknown setting 'tls'"),
        ("backends: {/a: {url: 'http://h:1', timeout: -1}}\n", "bad timeout"),
        ("backends: {/a: {url: 'http://h:1', certfile: /c.pem}}\n", "go together"),
        ("backends: {/a: {url: 'http://h:1'}}\noptions: {bogus: 1}\n", "bogus"),
        ("backends: [oops\n", "not valid YAML"),
        ("just text\n", "must be a mapping"),
        ("backends: {/a: {url: 'http://h:1', headers: {Host: x}}}\n", "Host"),
    ],
)
def test_config_file_mistakes_are_one_line_each(tmp_path: Path, text: str, says: str) -> None:
    config = tmp_path / "fed.yaml"
    config.write_text(text)
    with pytest.raises(FederationError, match=says) as error:
        load_config(config, [])
    assert "\n" not in str(error.value)


def test_a_mounts_line_takes_key_value_settings() -> None:
    spec = parse_mount_line(
        ["/dc3", "http://h:1", "root=/memfs", "timeout=2", "header=X-A:b", "insecure"],
        MountOptions(),
        ["/dc1"],
    )
    assert (spec.prefix, spec.root, spec.options.timeout) == ("/dc3", "/memfs", 2)
    assert spec.options.header == [("X-A", "b")] and spec.options.insecure
    with pytest.raises(FederationError, match="given twice"):
        parse_mount_line(["/dc1", "http://h:1"], MountOptions(), ["/dc1"])
    with pytest.raises(FederationError, match="key=value"):
        parse_mount_line(["/dc4", "http://h:1", "oops"], MountOptions(), [])
