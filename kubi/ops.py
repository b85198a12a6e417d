"""kubi's own pyinfra operations.

Each one reads a single batched fact, compares it with the wanted state and yields commands
only for what differs, so a converged host costs one round trip per operation.
"""

from __future__ import annotations

import functools
import hashlib
import shlex
import uuid
import weakref
from collections.abc import Callable
from io import BytesIO
from typing import Any

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, StringCommand, operation
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents

from kubi.aptsource import APT_ENV, APT_OPTS, apt_get
from kubi.facts import HomeFiles, ManagedFile, ManagedFiles, ServiceState, folders_guard

# With a non-root deploy account pyinfra uploads over SFTP as that account, then copies
# with sudo. Its default staging file, /tmp/pyinfra-<hash of the destination>, is
# predictable and made with the account's umask: any local user could read a secret there,
# or create the name first and change the content before the copy. kubi stages uploads in
# this folder instead, which root makes for the deploy account alone (/run is root's).
UPLOAD_DIR = "/run/kubi-upload"
# A dpkg killed mid-way (a host lost during an install) leaves its journal in updates/, and
# every apt-get then refuses ("dpkg was interrupted"): finish that work first, as apt asks.
# Cheap when nothing is pending (one ls), so every apt command of kubi starts with it.
REPAIR_DPKG = (
    '{ [ -z "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || '
    f"{APT_ENV} dpkg --configure -a --force-confdef --force-confold; }}"
)


# --- facts inside operations ----------------------------------------------------------------

# Per run (pyinfra's State; forgotten with it): (host, fact, arguments) -> (the value, how
# many operations had changed the host when it was asked)
_ASKED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, tuple], tuple[Any, int]]] = (
    weakref.WeakKeyDictionary()
)
# Per run: host -> every path the host's ops.file and ops.file_once were called with
_PATHS: weakref.WeakKeyDictionary[Any, dict[str, list[str]]] = weakref.WeakKeyDictionary()


def planned_fact(cls: type, **kwargs: Any) -> Any:
    """``host.get_fact(cls, **kwargs)`` for an operation's function, asked once for as long
    as nothing changes the host.

    pyinfra runs an operation's function to plan it, then again to execute it, and every
    operation of a run asks its own facts; a value stays true until an executed operation
    changes the host (runs a command), and is asked again after that, so an operation
    still sees what earlier ones did. A re-run that changes nothing asks each fact once."""
    state = _run()
    if state is None:
        return host.get_fact(cls, **kwargs)
    asked, changes = _ASKED.setdefault(state, {}), _changes_so_far(state)
    key = (host.name, cls.__name__, tuple(sorted(kwargs.items())))
    if key not in asked or asked[key][1] != changes:
        asked[key] = (host.get_fact(cls, **kwargs), changes)
    return asked[key][0]


def _run() -> Any:
    """The pyinfra run (State) the current host is part of; None for an operation's function
    called outside one (tests run them on this machine)."""
    state = ctx_state.get()
    if state is None or ctx_host.get() not in state.ops:
        return None
    return state


def _changes_so_far(state: Any) -> int:
    """How many operations executed on this host so far ran a command (0 while planning)."""
    if state.current_stage != StateStage.Execute:
        return 0
    return sum(
        1
        for op_data in state.ops[ctx_host.get()].values()
        if op_data.operation_meta.is_complete() and op_data.operation_meta.did_change()
    )


def _managed_file(path: str) -> Any:
    """The ManagedFile fact of `path`, asked with those of every other path this host's
    file operations name (ManagedFiles, one round trip) the first time one is needed while
    nothing changed the host: a converged host answers for all its files at once."""
    state = _run()
    named = _PATHS.get(state, {}).get(host.name, []) if state is not None else []
    paths = tuple(dict.fromkeys([path, *named]))
    if state is not None and len(paths) > 1:
        asked, changes = _ASKED.setdefault(state, {}), _changes_so_far(state)
        key = (host.name, ManagedFile.__name__, (("path", path),))
        if key not in asked or asked[key][1] != changes:
            found = host.get_fact(ManagedFiles, paths=paths) or {}
            for each, value in found.items():  # what planned_fact keeps for each path
                asked[(host.name, ManagedFile.__name__, (("path", each),))] = (value, changes)
    return planned_fact(ManagedFile, path=path)


def _naming_its_path(op: Any) -> Any:
    """`op` (ops.file, ops.file_once), noting each path it is called with for this host, so
    that `_managed_file` can ask about them all at once."""

    @functools.wraps(op)
    def call(*args: Any, **kwargs: Any) -> Any:
        state = _run()
        if state is not None and isinstance(kwargs.get("path"), str):
            _PATHS.setdefault(state, {}).setdefault(host.name, []).append(kwargs["path"])
        return op(*args, **kwargs)

    return call


@operation(is_idempotent=True)
def barrier():
    """
    Nothing on the host: an operation that every host of the run has at the same place, so
    that pyinfra, which orders each host's operations and lets hosts run ahead of each
    other, executes it (and what follows) once every host finished what comes before it.

    .. code:: python

        ops.barrier(name="every host done with the components before")
    """
    yield from ()


@operation()
def file(
    path: str,
    content: str | None,
    mode: str = "644",
    user: str = "root",
    group: str = "root",
    check: str | None = None,
    reload: str | None = None,
    make_dirs: bool = False,
):
    """
    Write (or remove) a whole file; optionally validate the service's whole config first.

    + path: remote file
    + content: wanted text, or ``None`` to remove the file
    + mode, user, group: wanted permissions and owner
    + check: command that validates the service configuration (e.g. ``nginx -t``); on
      failure the previous file is put back (or the new one removed), the command's own
      message is shown and the operation fails, so the running service is never broken
    + reload: command run after a successful change (e.g. ``systemctl reload nginx``)
    + make_dirs: create the parent folder (mode 755) when the file is new

    pyinfra runs an operation again when it executes it, with fresh facts, so a file that
    an earlier operation of the same run creates (a package's default) is seen then; the
    shell also decides on the host whether a previous version exists to restore.

    It never acts through a path another user controls: a symbolic link (or anything but a
    regular file) in the file's place, or a folder above it that is not root's alone (owned
    by root, written by no group or other), makes it fail with a message instead. The fact
    reads both without following a link, and each command that acts on the file checks
    them again on the host, right before acting, so a swap after the plan is caught too.

    .. code:: python

        ops.file(path="/etc/nginx/sites.conf.d/app.conf", content=text,
                 check="nginx -t", reload="systemctl reload nginx")
    """
    current = _managed_file(path)
    kind = None if current is None else current.get("type", "file")
    # A link in the file's place may be removed (rm and mv act on the link itself, never on
    # what it points to); anything else but a regular file, or an unsafe folder, is refused.
    if kind not in (None, "file") and not (content is None and kind == "symlink"):
        yield _refuse(path, current)
        return

    if content is None:
        if current is not None:
            yield _remove(path, check, reload)
        return

    data = content.encode()
    if current and current["sha256"] == hashlib.sha256(data).hexdigest():
        if (current["mode"], current["user"], current["group"]) != (mode.lstrip("0"), user, group):
            q = shlex.quote(path)
            yield _sh(
                f"{_guard(path)}; chmod {shlex.quote(mode)} {q} && chown {_owner(user, group)} {q}"
            )
        return

    n = _names(path)
    prepare = []
    if make_dirs and current is None:
        prepare.append(f"mkdir -p -m 755 {shlex.quote(path.rsplit('/', 1)[0] or '/')}")
    if int(mode, 8) & 0o004 == 0:
        # Not world-readable (a secret): create the temporary file with its final mode and
        # owner first, as the upload keeps them; it never exists with wider access.
        prepare.append(
            f"install -m {shlex.quote(mode)} -o {shlex.quote(user)} -g {shlex.quote(group)} "
            f"/dev/null {n['new']}"
        )
    if staging := _staging():
        prepare.append(staging)
    if prepare:
        yield " && ".join(prepare)
    yield _upload(data, f"{path}.kubi-new")
    owner = _owner(user, group)
    yield _install(
        path, f"chmod {shlex.quote(mode)} {n['new']} && chown {owner} {n['new']}", check, reload
    )


NOT_REGULAR = (
    "not a regular file (a symbolic link?); kubi never follows one: remove it and run again"
)


def _guard(path: str, regular: bool = True) -> str:
    """Shell that fails, on the host, unless acting on `path` follows nothing another user
    controls: every folder above it is root's alone (`folders_guard`) and, with `regular`,
    the path itself is a regular file or absent, never a symbolic link."""
    folders = folders_guard(
        path,
        "echo \"kubi: refusing $m: the folder $d (owner uid and mode: $a) is not root's alone;"
        ' no root operation follows a path another user controls" >&2; exit 1',
    )
    m = shlex.quote(path)
    if not regular:
        return f"m={m}; {folders}"
    return (
        f'm={m}; if [ -L "$m" ] || {{ [ -e "$m" ] && [ ! -f "$m" ]; }}; then '
        f'echo "kubi: refusing $m: {NOT_REGULAR}" >&2; exit 1; fi; ' + folders
    )


def _refuse(path: str, current: dict) -> StringCommand:
    """Fail with what the fact found, instead of acting through another user's path."""
    if current["type"] == "unsafe":
        why = (
            f"the folder {current['folder']} (owner uid {current['owner']}, mode "
            f"{current['mode']}) is not root's alone; no root operation follows a path "
            "another user controls"
        )
    else:
        why = NOT_REGULAR
    return _sh(f"echo {shlex.quote(f'kubi: refusing {path}: {why}')} >&2; exit 1")


def _owner(user: str, group: str) -> str:
    """`user:group` as one shell word."""
    return shlex.quote(f"{user}:{group}")


# Temporary names end in .kubi-new/.kubi-old so no `*.conf` include ever picks them up.
def _names(path: str) -> dict[str, str]:
    return {
        k: shlex.quote(v)
        for k, v in (("dst", path), ("new", f"{path}.kubi-new"), ("old", f"{path}.kubi-old"))
    }


def _install(path: str, prepare: str, check: str | None, reload: str | None) -> StringCommand:
    n = _names(path)
    if check is None:
        return _sh(
            f"{_guard(path)}; {prepare} && mv -f {n['new']} {n['dst']}"
            + (f" && {reload}" if reload else "")
        )
    return _sh(
        f"{_guard(path)}; {prepare} || exit 1; rm -f {n['old']}; "
        f"if [ -e {n['dst']} ]; then cp -p {n['dst']} {n['old']} || exit 1; fi; "
        f"mv -f {n['new']} {n['dst']} || exit 1; " + _verify(check, reload, n)
    )


def _remove(path: str, check: str | None, reload: str | None) -> StringCommand:
    # rm and mv never follow the name they remove or rename (a link goes, its target stays),
    # and the fact, read right before, refused a folder another user controls.
    n = _names(path)
    if check is None:
        return _sh(f"rm -f {n['dst']}" + (f" && {reload}" if reload else ""))
    return _sh(
        f"{{ [ -e {n['dst']} ] || [ -L {n['dst']} ]; }} || exit 0; "
        f"mv -f {n['dst']} {n['old']} || exit 1; " + _verify(check, reload, n)
    )


def _verify(check: str, reload: str | None, n: dict[str, str]) -> str:
    """Validate; keep the change and reload, or put the previous state back and fail.

    The message says which happened: a file that did not exist before (even nginx.conf
    itself) is removed again, and saying "kept" then would be untrue. The old name is put
    back even when it is a link to nothing, which `[ -e ]` alone does not see.
    """
    refused = f"kubi: `{check}` refused the change; "
    kept = shlex.quote(refused + "the previous configuration is kept")
    removed = shlex.quote(refused + "the new file was removed again: nothing was there before")
    return (
        f"if out=$({check} 2>&1); then rm -f {n['old']}; {reload or ':'}; else "
        f"if [ -e {n['old']} ] || [ -L {n['old']} ]; then mv -f {n['old']} {n['dst']}; "
        f"said={kept}; else rm -f {n['dst']}; said={removed}; fi; "
        f'printf \'%s\\n\' "$out" >&2; echo "$said" >&2; exit 1; fi'
    )


def _staging() -> str | None:
    """Shell that makes UPLOAD_DIR for the deploy account (mode 0700), when it uses sudo."""
    if not host.data.get("_sudo"):
        return None  # root writes each file straight to its place over SFTP
    return f"install -d -m 700 -o {shlex.quote(host.data.get('ssh_user'))} {UPLOAD_DIR}"


def _upload(data: bytes, dest: str) -> FileUploadCommand:
    """Upload `data` to `dest`, staged in UPLOAD_DIR (a name of its own) when through sudo."""
    if not host.data.get("_sudo"):
        return FileUploadCommand(BytesIO(data), dest)
    staged = f"{UPLOAD_DIR}/{uuid.uuid4().hex}"
    return FileUploadCommand(BytesIO(data), dest, remote_temp_filename=staged)


def _sh(script: str) -> StringCommand:
    return StringCommand("sh", "-c", shlex.quote(script))


@operation()
def packages(names: list[str], update: bool = True):
    """
    Install Debian packages that are missing (refreshing the package lists first).

    + names: package names
    + update: refresh the package lists before installing, unless they are fresh
      (`refresh_lists`); false skips it (an earlier operation of the run just did)

    Refreshing only when something is missing keeps a converged host at one round trip and
    avoids installing from stale lists when a package is added later.

    .. code:: python

        ops.packages(names=["nginx", "libnginx-mod-stream"])
    """
    installed = planned_fact(DebPackages)
    missing = [name for name in names if name not in installed]
    if missing:
        yield apt_install(missing, update)


def apt_install(names: list[str] | tuple[str, ...], update: bool = True, env: str = "") -> str:
    """Shell that installs `names` with apt (after a dpkg repair, and a refresh of the
    package lists unless `update` is false or they are fresh: `refresh_lists`), said in one
    line when apt cannot connect. `env`: extra environment of apt (``NAME=value`` words)."""
    words = " ".join(shlex.quote(name) for name in names)
    install = apt_get(f"{APT_OPTS} install {words}", env)
    return apt_explained(
        f"{REPAIR_DPKG} && " + (f"{refresh_lists(env)} && {install}" if update else install)
    )


# `apt-get update` re-reads every package list: a second or two of CPU on a host even when
# nothing changed upstream, and a first converge installs in seven components. The lists are
# refreshed once, then again only when an apt source or key changed since (a component added
# its vendor's repository), or once they are LISTS_FRESH_MINUTES old (a later run installs
# from current lists). The stamp's time is taken before the refresh starts.
LISTS_STAMP = "/var/lib/kubi/apt-lists-refreshed"
LISTS_FRESH_MINUTES = 10
APT_SOURCES_AND_KEYS = (
    "/etc/apt/sources.list", "/etc/apt/sources.list.d", "/etc/apt/trusted.gpg",
    "/etc/apt/trusted.gpg.d", "/etc/apt/keyrings", "/usr/share/keyrings",
)  # fmt: skip


def refresh_lists(
    env: str = "",
    always: bool = False,
    stamp: str = LISTS_STAMP,
    watched: tuple[str, ...] = APT_SOURCES_AND_KEYS,
) -> str:
    """Shell that refreshes the package lists unless they are fresh (see LISTS_STAMP), or
    in any case when `always`. (`stamp` and `watched`: other paths, for tests.)"""
    q, new, folder = (shlex.quote(p) for p in (stamp, stamp + ".new", stamp.rsplit("/", 1)[0]))
    update = f"mkdir -p {folder} && touch {new} && {apt_get('-q update', env)} && mv -f {new} {q}"
    if always:
        return update
    fresh = (
        f'[ -n "$(find {q} -mmin -{LISTS_FRESH_MINUTES} 2>/dev/null)" ] && '
        f'[ -z "$(find {" ".join(map(shlex.quote, watched))} -newer {q} 2>/dev/null '
        '| head -n 1)" ]'
    )
    return f"{{ {fresh} || {{ {update}; }}; }}"


@operation()
def system_upgrade(marker: str, upgrade: str, seeded: bool):
    """
    Refresh package lists and upgrade the system on first seeding (or always, if asked).

    + marker: file recording the first seeding
    + upgrade: ``first`` (default), ``always`` or ``never``
    + seeded: whether ``marker`` exists (from the batched SeedState fact)

    .. code:: python

        ops.system_upgrade(marker="/var/lib/kubi/seeded", upgrade="first", seeded=False)
    """
    if seeded and upgrade != "always":
        return
    steps = [REPAIR_DPKG, refresh_lists(always=True)]
    if upgrade != "never":
        steps.append(apt_get(f"{APT_OPTS} dist-upgrade"))
    q = shlex.quote(marker)
    yield (
        apt_explained(" && ".join(steps)) + f" && mkdir -p $(dirname {q}) && date -u +%FT%TZ > {q}"
    )


def apt_explained(command: str) -> str:
    """`command` (apt steps), which on failure says in one line when apt could not connect
    to its proxy or mirror (instead of 35 lines whose key one is buried), else shows apt's
    own output."""
    return (
        f"if ! out=$({command} 2>&1); then "
        "to=$(printf '%s\\n' \"$out\" "
        "| sed -n 's/.*Could not connect to \\([^ ]*\\).*/\\1/p' | head -n 1); "
        "why=$(printf '%s\\n' \"$out\" "
        "| sed -n 's/.*Could not connect to .* - \\(.*\\)$/\\1/p' | head -n 1); "
        'if [ -n "$to" ]; then echo "kubi: apt could not connect to $to ($why): check that the '
        "package proxy or mirror there runs and that this host reaches it (apt_proxy, "
        'package_proxy)" >&2; else printf \'%s\\n\' "$out" >&2; fi; exit 1; fi'
    )


@operation()
def block(
    path: str,
    content: str | None,
    marker: str = "kubi",
    required: tuple[str, ...] = (),
    reload: str | None = None,
):
    """
    Keep a marked block of lines in a file the system shares with others (e.g. /etc/hosts).

    + path: remote file
    + content: the block's lines (without markers); ``None`` removes the block
    + marker: names the ``# BEGIN <marker>`` / ``# END <marker>`` lines
    + required: lines the file must hold outside the block, as ``<first field> <name>``
      (``127.0.0.1 localhost``): a file where none has that first field and that name is
      damaged, and the line is put back at its top
    + reload: command run after a change (a service that reads the file only at start)

    Lines outside the block are kept as they are. The new file is written apart, then
    renamed over the old one (with its owner and mode), so no reader and no interrupted
    run ever sees half a file. A file that is itself a mount point (a container's bind
    mounted /etc/hosts) cannot be renamed over: it is then copied in place, from the
    complete new file.

    .. code:: python

        ops.block(path="/etc/hosts", content="10.0.0.5 repo.example.invalid repo",
                  required=("127.0.0.1 localhost",))
    """
    lines = planned_fact(FileContents, path=path) or []
    wanted = merge_block(lines, content, marker, required)
    if wanted == lines:
        return
    new = f"{path}.kubi-new"
    if staging := _staging():
        yield staging
    yield _upload(("\n".join(wanted) + "\n").encode(), new)
    q, n = shlex.quote(path), shlex.quote(new)
    # Its folders are checked, not the file: a link in root's own folder is root's choice.
    yield (
        f"{_guard(path, regular=False)}; "
        f"if awk -v p={q} '$5 == p {{ found = 1 }} END {{ exit !found }}' /proc/self/mountinfo; "
        f"then cat {n} > {q} && rm -f {n}; "
        f"else {{ [ ! -e {q} ] || {{ chmod --reference={q} {n} && chown --reference={q} {n}; }}; }}"
        f" && mv -f {n} {q}; fi" + (f" && {{ {reload}; }}" if reload else "")
    )


def merge_block(
    lines: list[str], content: str | None, marker: str, required: tuple[str, ...] = ()
) -> list[str]:
    """The file's lines with the marked block replaced (appended when absent, removed when
    `content` is None), and the `required` lines that are missing put back at the top."""
    begin, end = f"# BEGIN {marker}", f"# END {marker}"
    block_lines = [] if content is None else [begin, *content.rstrip("\n").split("\n"), end]
    if begin in lines and end in lines[lines.index(begin) :]:
        start = lines.index(begin)
        stop = lines.index(end, start)
        merged = lines[:start] + block_lines + lines[stop + 1 :]
    else:
        merged = [*lines, *block_lines]
    outside = [line.split() for line in lines if not line.lstrip().startswith("#")]
    missing = []
    for line in required:
        first, name = line.split()[:2]
        if not any(fields[:1] == [first] and name in fields[1:] for fields in outside):
            missing.append(line)
    return missing + merged


@operation()
def service(
    unit: str,
    running: bool | None = True,
    enabled: bool | None = True,
    current: dict | None = None,
):
    """
    Keep a systemd unit running and/or enabled.

    + unit: the unit, e.g. ``nginx``
    + running: ``True`` start it, ``False`` stop it, ``None`` leave it
    + enabled: ``True`` enable it at boot, ``False`` disable it, ``None`` leave it
    + current: the unit's state as `ServiceState` gives it, when the deploy has read it
      already in a batched fact of its own (nginx's, with ``nginx -t``): then the
      operation reads no fact, and a converged host costs no round trip more for it

    .. code:: python

        ops.service(unit="nginx", running=True, enabled=True)
    """
    if current is None:
        current = planned_fact(ServiceState, unit=unit)
    u = shlex.quote(unit)
    if enabled is not None and current["enabled"] is not enabled:
        yield f"systemctl {'enable' if enabled else 'disable'} {u}"
    if running is not None and current["active"] is not running:
        yield f"systemctl {'start' if running else 'stop'} {u}"


@operation()
def file_once(path: str, content: str):
    """
    Create a file only if it does not exist; never touch an existing one.

    + path: remote file (mode 644, root)
    + content: what a new file starts with

    For a file that holds state another tool writes (a Helm index): a deploy must not
    reset it. `ln` creates the name only if it is free, atomically, so even a write
    between planning and running is never overwritten.

    .. code:: python

        ops.file_once(path="/var/lib/kubi/charts/index.yaml", content="apiVersion: v1\n")
    """
    current = _managed_file(path)
    if current is not None:
        if current.get("type") == "unsafe":
            yield _refuse(path, current)
        return
    n = _names(path)
    if staging := _staging():
        yield staging
    yield _upload(content.encode(), f"{path}.kubi-new")
    yield (
        f"{_guard(path, regular=False)}; "
        f"chmod 644 {n['new']} && chown root:root {n['new']} && "
        f"{{ ln {n['new']} {n['dst']} 2>/dev/null || true; }} && rm -f {n['new']}"
    )


@operation()
def registry_image(ref: str, repository: str, present: bool, archive: str | None = None):
    """
    Copy an image into the platform registry of this host (its loopback listener), with
    skopeo; nothing when it is there already.

    + ref: the image's upstream name (``registry.k8s.io/pause:3.10``)
    + repository: its name in the platform registry, with its tag
    + present: whether the registry holds it as wanted (the deploy's fact)
    + archive: an OCI image archive on the deployer to copy from; None: from upstream, every
      platform of a multi-platform image (its digest stays upstream's)
    """
    if present:
        host.noop(f"{ref} is in the platform registry")
        return
    from kubi.images import Image
    from kubi.registry import UPSTREAM  # the registry's own HTTP listener, loopback only

    dest = shlex.quote(f"docker://{UPSTREAM}/{repository}")
    if archive is None:
        image = Image(ref)
        # skopeo reads no name with both a tag and a digest: a pinned image is read by its
        # digest, and copied unchanged (or not at all), so nodes find it by that digest.
        source = f"{image.repository}@{image.digest}" if image.digest else ref
        exact = " --preserve-digests" if image.digest else ""
        yield _sh(
            f"skopeo copy --quiet --all{exact} --dest-tls-verify=false "
            f"{shlex.quote('docker://' + source)} {dest}"
        )
        return
    staged = f"/var/tmp/kubi-image-{uuid.uuid4().hex}.tar"  # root's: 0600, removed after
    if host.data.get("_sudo"):
        yield StringCommand(_staging())
        yield FileUploadCommand(
            archive, staged, remote_temp_filename=f"{UPLOAD_DIR}/{uuid.uuid4().hex}"
        )
    else:
        yield FileUploadCommand(archive, staged)
    # Copied as it is: the registry then holds the archive's manifest digest, which the next
    # run compares.
    yield _sh(
        f"trap 'rm -f {staged}' EXIT; skopeo copy --quiet --preserve-digests "
        f"--dest-tls-verify=false {shlex.quote('oci-archive:' + staged)} {dest}"
    )


@operation(is_idempotent=True)
def cluster_objects(
    component: str,
    objects: list[dict],
    kinds: list[tuple[str, str]],
    timeout: float = 300.0,
):
    """A component's objects in the cluster, the way of kubi/apply.py: planned by a
    server-side dry run through kubi's tunnel (kubi/kubeapi.py), so pyinfra shows what would
    change before it asks, and a converged component plans nothing; executed as apply,
    prune of what the component no longer renders (of `kinds`), and the bounded wait.

    + component: the owner label of every object (kubi's component name)
    + objects: the rendered objects (dicts)
    + kinds: (apiVersion, kind) of every kind the component may own, for the prune
    """
    from pyinfra import logger
    from pyinfra.api import FunctionCommand

    from kubi import apply, kubeapi
    from kubi.inventory import declared

    platform = declared()
    name = platform.config.name

    def converge() -> None:
        with kubeapi.answering(platform) as api:
            apply.apply(api, objects, component=component, platform=name)
            apply.prune(api, objects, component=component, platform=name, kinds=kinds)
            apply.wait_ready(api, objects, timeout)

    try:
        with kubeapi.connected(platform) as api:
            planned = apply.apply(api, objects, component=component, platform=name, dry_run=True)
            doomed = apply.prune(
                api, objects, component=component, platform=name, kinds=kinds, dry_run=True
            )
    except apply.ApiUnreachable:
        # planned before the run made the cluster (a first converge), or executed while its
        # API servers restart (a control plane joining): applied once the API answers
        logger.info(
            f"{host.name}: {component}: {len(objects)} objects, applied once the cluster's "
            "API answers (not yet while planning)"
        )
        yield FunctionCommand(converge, (), {})
        return
    changes = [a for a in planned.objects if a.action != "unchanged"]
    if not changes and not doomed:
        host.noop(f"{component}: {len(planned.objects)} objects as rendered")
        return
    for change in changes:  # what pyinfra's confirmation will be about
        logger.info(f"{host.name}: {component}: {change}\n{change.diff.rstrip()}")
    for gone in doomed:
        logger.info(f"{host.name}: {component}: {gone}: pruned (no longer rendered)")
    yield FunctionCommand(converge, (), {})


class UploadMadeLater(FileUploadCommand):
    """An upload whose content is made when it executes (`make()`), for what exists only
    once the run's earlier operations ran: a token the cluster makes for a new account."""

    def __init__(self, make: Callable[[], bytes], dest: str, remote_temp_filename: str | None):
        super().__init__(BytesIO(b""), dest, remote_temp_filename=remote_temp_filename)
        self.make = make

    def execute(self, state, host, connector_arguments):  # type: ignore[no-untyped-def]
        self.src = BytesIO(self.make())
        return super().execute(state, host, connector_arguments)


# Written by a process running as the person, from a file root staged: root never opens a
# path in a home. A file there that kubi did not write is kept aside once (.before-kubi).
_WRITE_AS_PERSON = r"""
umask 077
f="$HOME/$1"
mkdir -p "$(dirname "$f")" || exit 1
if { [ -e "$f" ] || [ -L "$f" ]; } && [ "$(head -n 1 "$f" 2>/dev/null)" != "$2" ] \
  && [ ! -e "$f.before-kubi" ]; then
  mv -f "$f" "$f.before-kubi" || exit 1
fi
t=$(mktemp "$(dirname "$f")/.kubi.XXXXXX") || exit 1
cat > "$t" && chmod 600 "$t" && mv -f "$t" "$f" || { rm -f "$t"; exit 1; }
"""
_REMOVE_AS_PERSON = r"""
f="$HOME/$1"
if [ -f "$f" ] && [ ! -L "$f" ] && [ "$(head -n 1 "$f")" = "$2" ]; then rm -f "$f"; fi
"""


@operation()
def home_file(
    person: str,
    path: str,
    marker: str,
    people: tuple[str, ...] = (),
    content: str | None = None,
    later: Callable[[], str] | None = None,
):
    """
    A file of kubi's in a person's home (mode 0600), written or removed by a process running
    as that person, so that no path they control is ever followed by root.

    + person: the account
    + path: the file, relative to the home (``.kube/config``)
    + marker: the file's first line, by which kubi knows its own files
    + people: every person whose file of that path the run manages on this host, asked
      about in one round trip (HomeFiles); default: `person` alone
    + content: the file; None (and no `later`): remove it, when it is kubi's
    + later: instead of `content`, what makes it when the operation executes (a secret that
      earlier operations of the run create); the file is then always written

    A file there that kubi did not write is kept as ``<path>.before-kubi``.
    """
    # Asked when the operation runs: an account the run creates (bastion) exists by then.
    asked = planned_fact(HomeFiles, people=people or (person,), path=path, marker=marker)
    state, sha = asked.get(person, ("nouser", None))
    if state == "nouser":
        host.noop(f"{person} has no account here")
        return
    who, where = shlex.quote(person), shlex.quote(path)
    mark = shlex.quote(marker)
    if content is None and later is None:
        if state != "kubi":
            host.noop(f"no file of kubi's at ~{person}/{path}")
            return
        yield _sh(f"runuser -u {who} -- sh -c {shlex.quote(_REMOVE_AS_PERSON)} sh {where} {mark}")
        return
    if content is not None:
        if not content.startswith(marker + "\n"):
            raise OperationError(f"home_file {path}: the content must begin with its marker")
        if state == "kubi" and sha == hashlib.sha256(content.encode()).hexdigest():
            host.noop(f"~{person}/{path} is up to date")
            return
    staged = f"{UPLOAD_DIR}/home-{uuid.uuid4().hex}"
    if host.data.get("_sudo"):
        yield StringCommand(_staging())
        temp: str | None = f"{UPLOAD_DIR}/{uuid.uuid4().hex}"
    else:  # root's own staging folder, where no other account can read
        yield StringCommand(f"install -d -m 700 -o root -g root {UPLOAD_DIR}")
        temp = None
    if content is not None:
        yield FileUploadCommand(BytesIO(content.encode()), staged, remote_temp_filename=temp)
    else:
        assert later is not None
        yield UploadMadeLater(lambda: later().encode(), staged, remote_temp_filename=temp)
    yield _sh(
        f"trap 'rm -f {staged}' EXIT; "
        f"runuser -u {who} -- sh -c {shlex.quote(_WRITE_AS_PERSON)} sh {where} {mark} < {staged}"
    )


# Each call notes its path for this host, so that a converged host's files are asked about
# in one round trip (_managed_file).
file = _naming_its_path(file)  # type: ignore[misc]
file_once = _naming_its_path(file_once)  # type: ignore[misc]
