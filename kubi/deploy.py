"""What deploy code needs from kubi: the platform config and the current host's part of it."""

from __future__ import annotations

import functools
import importlib
import itertools
import sys
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

import pyinfra
from pyinfra import host, logger, state
from pyinfra.api import arguments as pyinfra_arguments
from pyinfra.api import deploy
from pyinfra.api import util as pyinfra_util
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import server

from kubi import aptsource, components, dropout, ops
from kubi.config import Host, Platform
from kubi.facts import PrimaryIPv4
from kubi.inventory import current

# Per pyinfra state (one per run): weak keys, so a new state never sees an old one's data.
_addresses: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def platform() -> Platform:
    """The validated config of this run."""
    return current()


def me() -> Host:
    """The config of the host pyinfra is planning for."""
    return platform().host(host.name)


def addresses() -> dict[str, str]:
    """Host-network IPv4 of every platform host, by host name.

    From the config when it gives `ip`; otherwise asked once per run from the host itself
    (one round trip per such host, shared by every host's plan).
    """
    key = ctx_state.get()  # the State object itself, not pyinfra's context proxy
    if key not in _addresses:
        found = {}
        for spec in platform().hosts:
            if spec.ip is not None:
                found[spec.name] = str(spec.ip)
                continue
            other = state.inventory.get_host(spec.name)
            if other is None or other not in state.activated_hosts:
                raise RuntimeError(
                    f"host {spec.name!r}: no `ip` in the config and the host is not part of "
                    "this run; set its ip in the inventory"
                )
            ip = other.get_fact(PrimaryIPv4)
            if not ip:
                raise RuntimeError(f"host {spec.name!r}: no global IPv4 address found; set its ip")
            found[spec.name] = ip
        _addresses[key] = found
    return _addresses[key]


# --- components as deploy functions ------------------------------------------------------------


def component(name: str) -> Callable[[Callable[[], None]], Callable[..., Any]]:
    """`@deploy` for the component `name` of `kubi.components`.

    The function runs only on hosts with one of the component's roles, and only when the
    platform has the component on (a run of a component that is off says so once per
    host and changes nothing). Its operations are named ``<component> | <operation>``.

    .. code:: python

        @component("nginx")
        def nginx() -> None:
            ops.packages(name="nginx packages", names=["nginx"])
    """
    spec = components.get(name)

    def wrap(func: Callable[[], None]) -> Callable[..., Any]:
        @functools.wraps(func)
        def body() -> None:
            this, run = ctx_host.get(), ctx_state.get()
            if this in run.failed_hosts:  # dropped out earlier in this run
                return
            try:
                dropout.watch(this)
                _lock_this_host()
                # pyinfra orders operations host by host: without an operation every host
                # shares here, one host would start this component before the others end
                # the components before it (a userspace applied before the cluster exists).
                ops.barrier(name="every host done with the components before")
                if not set(me().roles) & set(spec.roles):
                    return
                if not platform().enabled(name):
                    logger.warning(
                        f"{host.name}: component {name} is off in this platform "
                        f"(components.{name} = false); nothing to do"
                    )
                    return
                func()
            except dropout.LostWhilePlanning:
                run.fail_hosts({this})  # said once by kubi.dropout; the others go on

        return deploy(name)(body)

    return wrap


def _lock_this_host() -> None:
    """The host's run lock (kubi.runlock), before its first component is planned; a host
    another run holds stops this whole run with one line."""
    from kubi import runlock

    key = ctx_state.get()
    try:
        runlock.lock_host(host, key, f"{runlock.holder()}, platform {platform().name}")
    except runlock.RunLocked as exc:
        logger.error(str(exc))
        raise SystemExit(3) from None


def vendor_packages(
    node: Host,
    sources: list[aptsource.AptSource],
    keyrings: dict,
    mirror: str | None,
    preferences: str,
    subject: str,
    env: str = "",
) -> None:
    """Packages from vendors' apt repositories: keys (pinned fingerprints), sources and
    version pins, then the packages missing, after a check of each repository they come
    from, so an unreachable one stops the run with one line naming it.

    + keyrings: the sources' keyrings as `aptsource.parse_keyrings` read them (a fact)
    + mirror: the component's mirror setting; the host's apt proxy is the platform's
    + preferences: the component's apt preferences file (its pins)
    + subject: what the packages are, in the operations' names, e.g. ``log stack``
    + env: extra environment of the install (``NAME=value`` words)
    """
    proxy = platform().apt_proxy_for(node)
    now = time.time()
    for source in host.loop(sources):
        if not aptsource.keyring_ok(keyrings.get(source.keyring), source.fingerprint, now):
            server.shell(
                name=f"repository key {source.name} ({source.fingerprint})",
                commands=[aptsource.key_install_command(source, mirror, proxy)],
            )
        ops.file(
            name=f"repository {source.name}",
            path=source.sources_path,
            content=aptsource.sources_list(source, mirror, proxy),
        )
    pins = aptsource.apt_preferences(sources)
    ops.file(name=f"{subject} version pins", path=preferences, content=pins)
    missing = aptsource.packages_to_install(sources, host.get_fact(DebPackages))
    if not missing:
        return
    # `apt-get update` only warns about a repository it cannot reach.
    for source in host.loop(sources):
        if set(source.pins) & set(missing):
            server.shell(
                name=f"repository {source.name} reachable",
                commands=[aptsource.repository_check_command(source, mirror, proxy)],
            )
    server.shell(
        name=f"{subject} packages {' '.join(missing)}",
        commands=[ops.apt_install(missing, env=env)],
    )


def entry_script(module_name: str) -> bool:
    """Whether a deploy file is being run by pyinfra itself (`pyinfra inv deploys/x.py`).

    pyinfra executes the file it is given without a module name (``__name__`` is then the
    builtins' own), whereas `import deploys.x` (deploys/all.py, another deploy) gives it
    its module name: the file deploys its component only in the first case.
    """
    return module_name in ("builtins", "__main__")


def deploy_function(spec: components.Component) -> Callable[..., Any]:
    """The deploy function of a component, ``deploys.<name>.<name>``, called so that its
    operations come after those of the components before it in the list (`_in_order`)."""
    module = importlib.import_module(f"deploys.{spec.name}")
    position = components.NAMES.index(spec.name)
    return functools.partial(_in_order, position, getattr(module, spec.name))


def _in_order(position: int, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `function` from a frame whose line number is `position` + 1.

    Where pyinfra may run several operations at one step, it takes them in the order of
    the line numbers of the stack that made each one: the deploy file's line, then every
    frame below it, whatever its file, and a loop's position only last. Components all
    called from one line of deploys/all.py would then interleave by the line numbers of
    their own files; this frame, right below that line, puts the component's position in
    the list first. (Across hosts, the barrier at each component's start keeps the order.)"""
    scope = {"function": function, "args": args, "kwargs": kwargs}
    exec(_ORDER_STUBS.setdefault(position, _order_stub(position)), scope)  # noqa: S102
    return scope["result"]


_ORDER_STUBS: dict[int, Any] = {}


def _order_stub(position: int) -> Any:
    # one statement on line `position` + 1 of a code object of its own
    return compile("\n" * position + "result = function(*args, **kwargs)", "<kubi order>", "exec")


# --- two of pyinfra's costs per operation, cheaply -------------------------------------------


def _operation_order_from_stack(state: Any) -> list[int]:
    """pyinfra's `get_operation_order_from_stack`, from the frames themselves.

    pyinfra orders each operation by the line numbers of the stack that made it, read
    with `inspect.stack()`, which also looks up every frame's source file and lines, for
    every operation on every host: a third of the deployer's CPU in a no-op run of 5 lab
    hosts. The same numbers come from each frame's code object: its file, and the line
    where the executing instruction starts (what `inspect.getframeinfo` reports)."""
    frames: list[FrameType] = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()  # outermost first, as pyinfra walks them
    first = 0
    if state.current_deploy_filename:
        for first, outer in enumerate(frames):  # noqa: B007 - the index is the result
            if outer.f_code.co_filename == state.current_deploy_filename:
                break
    numbers = [state.current_op_file_number] if pyinfra.is_cli else []
    for inner in frames[first:]:
        if inner.f_code.co_filename.startswith(pyinfra_util.PYINFRA_INSTALL_DIR):
            continue
        numbers.append(_line(inner))
    return numbers


def _line(frame: FrameType) -> int:
    """The line where `frame`'s executing instruction starts, as inspect.getframeinfo says."""
    if frame.f_lasti >= 0:
        start = next(itertools.islice(frame.f_code.co_positions(), frame.f_lasti // 2, None))[0]
        if start is not None:
            return start
    return frame.f_lineno


# (`pyinfra.api.operation` as an attribute is the decorator: the module, from sys.modules)
setattr(  # noqa: B010 - the module's own name for it, which mypy does not see
    importlib.import_module("pyinfra.api.operation"),
    "get_operation_order_from_stack",
    _operation_order_from_stack,
)


_GLOBAL_ARGUMENTS = pyinfra_arguments.all_global_arguments()


def _all_global_arguments() -> list[tuple[str, type]]:
    """pyinfra's `all_global_arguments`, evaluated once: it evaluated the type hints of its
    arguments class (typing.get_type_hints) again for every operation on every host."""
    return list(_GLOBAL_ARGUMENTS)


pyinfra_arguments.all_global_arguments = _all_global_arguments
