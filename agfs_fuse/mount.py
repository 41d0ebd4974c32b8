"""The mount's lifecycle: checks, pyfuse3 init, the main loop, signals, clean unmount.

Nothing here translates file operations; it builds the pieces, runs them in one trio
nursery and tears them down in reverse, uploading pending writes before unmounting.
Readiness is reported through a callback, so the CLI can return only once the mount
is usable (background mode) and systemd can be told ``READY=1``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import pyfuse3
import trio

from . import errors
from .backends import BackendTable
from .client import AgfsClient
from .connect import ConnectError, client_factory
from .federated_client import FederatedClient
from .federation_config import Federation
from .federation_control import FederationControl
from .filesystem import AgfsFilesystem
from .fuse_attrs import AttrPolicy
from .inodes import InodeTable
from .notify import notify, status
from .operations import AgfsOperations
from .options import MountOptions
from .path_settings import CacheTimeouts, ConstantSettings, PathSettings
from .rename_recovery import recover as recover_renames
from .spool import UnsafeSpoolDir, default_cache_dir, mount_spool_dir
from .spool_recovery import recover_closed_spool
from .stats import RequestStats
from .taskdump import describe_tasks
from .wire import normalize_base_url

log = logging.getLogger(__name__)

SHUTDOWN_UPLOAD_GRACE = 60.0
Ready = Callable[[str | None], None]
"""Called once: with None when the mount is usable, or with a one-line error."""


class MountError(Exception):
    """A mount-time failure; the message is the one line the user sees."""


@dataclass
class MountRequest:
    url: str
    """The URL as the user gave it: the mount's source in /proc/mounts (so `mount -a`
    recognises it); the client normalises its own copy."""
    mountpoint: str
    options: MountOptions
    federation: Federation | None = None
    """Several servers, one per top-level directory (``url`` is then the federation's
    source: its config file, or ``agfs-federation``)."""


def check_mountpoint(mountpoint: str, nonempty: bool) -> None:
    """Refuse a missing, busy or non-empty mountpoint; clear a stale one left by a crash."""
    # listdir, not stat: the kernel answers stat of a dead FUSE root from its attribute
    # cache for a while, but reading the directory always needs the (dead) process.
    try:
        os.listdir(mountpoint)
    except FileNotFoundError:
        raise MountError(f"mountpoint {mountpoint} does not exist") from None
    except NotADirectoryError:
        raise MountError(f"mountpoint {mountpoint} is not a directory") from None
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise MountError(f"cannot use mountpoint {mountpoint}: {exc.strerror}") from None
        log.warning("clearing a stale mount on %s left by a crashed mount", mountpoint)
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], check=False, capture_output=True)
        try:
            os.listdir(mountpoint)
        except OSError as again:
            raise MountError(f"cannot clear stale mount on {mountpoint}: {again}") from None
    if not os.path.isdir(mountpoint):
        raise MountError(f"mountpoint {mountpoint} is not a directory")
    if os.path.ismount(mountpoint):
        raise MountError(f"{mountpoint} is already a mount point (unmount it first)")
    if not nonempty and os.listdir(mountpoint):
        raise MountError(f"mountpoint {mountpoint} is not empty (use -o nonempty to mount anyway)")


async def check_server(client: AgfsClient) -> None:
    """Fail with one clear line when the URL is not a reachable AGFS server."""
    try:
        health = await client.health()
    except errors.ServerUnreachable as exc:
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in exc.message:
            hint = " (TLS verification failed: give the CA with -o cafile=PATH)"
        raise MountError(
            f"cannot reach AGFS server at {client.base_url}: {exc.message}{hint}"
        ) from None
    except errors.RequestTimeout:
        raise MountError(f"AGFS server at {client.base_url} does not answer") from None
    except errors.PermissionDenied as exc:
        raise MountError(
            f"{client.base_url} refused access ({exc.message}); a token goes in "
            "-o token_file=PATH or $AGFS_TOKEN"
        ) from None
    except errors.AgfsError as exc:
        raise MountError(
            f"{client.base_url} does not look like an AGFS server: {exc.message}"
        ) from None
    if health.degraded:
        log.warning("AGFS server at %s reports it is degraded", client.base_url)


def fuse_options(request: MountRequest) -> set[str]:
    options = {f"fsname={request.url.replace(',', '%2C')}", "subtype=agfs"}
    options.update(request.options.kernel)
    options.discard("rw")
    return options


async def _check_root(fs: AgfsFilesystem, root: str) -> None:
    try:
        info = await fs.stat(root, fresh=True)
    except errors.AgfsError as exc:
        raise MountError(f"-o root={root}: {exc.message}") from None
    if not info.is_dir:
        raise MountError(f"-o root={root} is not a directory on the server")


async def _recover_leftovers(fs: AgfsFilesystem) -> None:
    """Report spools an earlier run left behind, and close server handles it left open."""
    for data, meta in fs.spool_dir.leftovers():
        where = f"{meta.remote_path} on {meta.server_url}" if meta else "an unknown file"
        log.warning("an earlier upload of %s did not finish; its content is in %s", where, data)
        if meta is None or meta.server_url != fs.url:
            continue  # another server's handles and files are not ours to touch from here
        if fs.federation is not None and fs.federation.table.find(meta.remote_path) is None:
            log.warning(
                "%s belongs to a backend this mount does not have: it stays kept, and is"
                " never uploaded to another backend",
                meta.remote_path,
            )
            continue
        if meta.handle_id is not None:
            try:
                await fs.client.close_handle(meta.handle_id)
                log.info("closed handle %s left open by the earlier run", meta.handle_id)
            except errors.AgfsError as exc:
                log.info("handle %s left by the earlier run is gone: %s", meta.handle_id, exc)
        if meta.temporary is not None:
            try:
                await fs.client.delete(meta.temporary)
                log.info("removed %s, an upload the earlier run did not finish", meta.temporary)
            except errors.AgfsError as exc:
                log.info("unfinished upload %s is gone: %s", meta.temporary, exc)
        if meta.closed and meta.reason is None:
            await recover_closed_spool(fs, data, meta)


async def _handle_signals(fs: AgfsFilesystem, operations: AgfsOperations) -> None:
    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
    with trio.open_signal_receiver(*wanted) as signals:
        async for signum in signals:
            if signum == signal.SIGUSR1:
                log.warning("SIGUSR1: what each task waits for\n%s", describe_tasks())
                continue
            if signum == signal.SIGHUP:
                try:
                    await operations.reload("")
                except errors.AgfsError as exc:
                    log.error("reload on SIGHUP failed: %s", exc)
                continue
            log.info("signal %s: uploading pending writes, then unmounting", signum)
            notify("STOPPING=1", "STATUS=uploading pending writes, then unmounting")
            with trio.move_on_after(SHUTDOWN_UPLOAD_GRACE):
                await fs.flush_all(final=True)
            pyfuse3.terminate()
            return


def _federated_client(federation: Federation) -> FederatedClient:
    table = BackendTable(RequestStats(), defaults=CacheTimeouts.of(federation.options))
    for spec in federation.backends:
        try:
            table.add(table.build(spec))
        except ConnectError as exc:
            raise MountError(f"backend {spec.prefix}: {exc}") from None
    return FederatedClient(table, federation.source)


async def _check_backends(control: FederationControl) -> None:
    """Mount even when some backends are down (each shows EIO until it answers), but
    not when none answers: then the configuration itself is likely wrong."""
    try:
        down = await control.check_all()
    except errors.AgfsError as exc:
        raise MountError(exc.message) from None
    if down and len(down) == len(control.table.all()):
        raise MountError(
            "no backend answers: " + ", ".join(f"{b.prefix} ({b.url})" for b in control.table.all())
        )


async def _serve(request: MountRequest, ready: Ready) -> None:
    opts = request.options
    federation = request.federation
    client: AgfsClient
    settings: PathSettings
    if federation is None:
        url = normalize_base_url(request.url)
        try:
            make_client = client_factory(opts, RequestStats())
        except ConnectError as exc:
            raise MountError(str(exc)) from None
        client = make_client(url)
        settings = ConstantSettings(CacheTimeouts.of(opts), async_everywhere=opts.async_upload)
    else:
        url = federation.source
        for warning in federation.warnings:
            log.warning("%s", warning)
        federated = _federated_client(federation)
        client, settings = federated, federated.table
        make_client = _no_switch
    status(f"checking {request.mountpoint}")
    check_mountpoint(request.mountpoint, opts.nonempty)
    status(f"connecting to {url}")
    if federation is None:
        await check_server(client)
    try:
        spool_dir = mount_spool_dir(opts.cache_dir or default_cache_dir(), url, request.mountpoint)
    except UnsafeSpoolDir as exc:
        raise MountError(str(exc)) from None
    fs = AgfsFilesystem(
        client,
        spool_dir,
        client_factory=make_client,
        settings=settings,
        max_kept=opts.max_kept,
    )
    fs.mountpoint = os.path.realpath(request.mountpoint)
    if federation is not None:
        assert isinstance(client, FederatedClient)
        fs.federation = FederationControl(fs, client, federation.options)
        await _check_backends(fs.federation)
    await fs.refresh_mounts()
    await _check_root(fs, opts.root)
    await _recover_leftovers(fs)
    await recover_renames(fs.rename_journal, fs.client)
    policy = AttrPolicy(
        uid=os.getuid() if opts.uid is None else opts.uid,
        gid=os.getgid() if opts.gid is None else opts.gid,
        umask=opts.umask,
        settings=settings,
    )
    operations = AgfsOperations(
        fs, InodeTable(opts.root), policy, writeback_cache=opts.writeback_cache
    )
    try:
        pyfuse3.init(operations, request.mountpoint, fuse_options(request))
    except RuntimeError as exc:
        raise MountError(f"cannot mount on {request.mountpoint}: {exc}") from None
    mounted = True
    try:
        async with trio.open_nursery() as nursery:
            fs.attach(nursery)

            async def fuse_loop() -> None:
                await pyfuse3.main(min_tasks=4, max_tasks=64)
                nursery.cancel_scope.cancel()  # unmounted: stop signals, stream followers

            nursery.start_soon(_handle_signals, fs, operations)
            nursery.start_soon(fuse_loop)
            await operations.kernel_ready.wait()
            # Only now: the kernel sets the readahead when FUSE's INIT is answered.
            await trio.to_thread.run_sync(raise_readahead, request.mountpoint)
            log.info("mounted %s on %s", url, request.mountpoint)
            ready(None)
            notify("READY=1", f"STATUS=serving {url} on {request.mountpoint}")
    finally:
        notify("STOPPING=1")
        with trio.move_on_after(SHUTDOWN_UPLOAD_GRACE):
            await fs.flush_all(final=True)
        fs.keep_pending()
        if mounted:
            pyfuse3.close(unmount=True)
        await fs.aclose()


READ_AHEAD_KB = 512
"""The kernel's readahead for the mount. Measured in ``make bench`` (cold 256 MiB read, and
peak RSS copying 1 GiB out): 128 KiB 830-930 ms, 93 MiB; 512 KiB 693 ms, 93 MiB; 1024 KiB
634 ms, 113-119 MiB, over the 100 MiB the mount may use."""


def raise_readahead(
    mountpoint: str, mountinfo: str = "/proc/self/mountinfo", bdi_root: str = "/sys/class/bdi"
) -> int | None:
    """Raise the mount's readahead to ``READ_AHEAD_KB`` (never lower it); returns the new
    value, or None where that is not allowed (only root may write the bdi's sysfs file).

    libfuse would ask for it at init, but pyfuse3 does not expose ``max_readahead``. The
    device is found in ``mountinfo``, not by a stat of the mountpoint, which would be a
    FUSE request to this very process.
    """
    # Only the parent is resolved: resolving the mountpoint itself would stat it.
    absolute = os.path.abspath(mountpoint)
    target = os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))
    try:
        with open(mountinfo) as f:
            device = next(
                (
                    fields[2]
                    for fields in (line.split() for line in f)
                    if len(fields) > 4 and _unescape(fields[4]) == target
                ),
                None,
            )
        if device is None:
            return None
        knob = f"{bdi_root}/{device}/read_ahead_kb"
        with open(knob, "r+") as f:
            if int(f.read().strip() or 0) >= READ_AHEAD_KB:
                return None
            f.seek(0)
            f.write(str(READ_AHEAD_KB))
    except (OSError, ValueError) as exc:
        log.debug("kernel readahead left as it is: %s", exc)
        return None
    log.debug("kernel readahead raised to %d KiB (%s)", READ_AHEAD_KB, knob)
    return READ_AHEAD_KB


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _no_switch(url: str) -> AgfsClient:
    """A federated mount's core never makes a client itself: each backend has its own."""
    raise errors.InvalidArgument("a federated mount switches servers per backend")


def run_mount(request: MountRequest, ready: Ready) -> int:
    """Mount and serve until unmounted; returns the process exit status."""
    try:
        if request.federation is None:
            normalize_base_url(request.url)
    except errors.InvalidArgument as exc:
        ready(exc.message)
        return 2
    reported = False

    def report(message: str | None) -> None:
        nonlocal reported
        reported = True
        ready(message)

    try:
        trio.run(_serve, request, report)
    except MountError as exc:
        if not reported:
            report(str(exc))
        else:
            log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        log.exception("the mount failed")
        if not reported:
            report(f"internal error: {exc!r} (see the log)")
        return 1
    return 0
