"""The Helm chart repository of the repository host: lint, package, publish, index.

The repository is static files in `charts.path` (index.yaml and `<name>-<version>.tgz`),
served read-only by the repository nginx at `https://<repository alias>/charts/`. Charts
arrive only through `kubi charts publish`, over SSH:

    kubi charts publish ./mychart --inventory inventories/prod.py [--force]

1. Helm's own linter (strict, against the platform's Kubernetes version) refuses a bad
   chart with Helm's own messages;
2. a chart folder is packaged by Helm into `<name>-<version>.tgz`;
3. the remote index.yaml is read and the new chart merged into it by Helm's
   `repo index --merge` (every existing entry is kept);
4. archive and index are replaced atomically on the host, under a lock, and only if the
   index did not change in between (otherwise 3-4 are done again).

A name and version already published with other content is refused (unless `force`);
the same content again changes nothing. Helm records file times in an archive, so
"same content" compares the files inside the archives, not the archives' bytes.

Helm itself comes from `helm-python-sdk` (Helm 4's Go SDK in a bundled library, no helm
binary): its `lint`, `package`, `Chart.load` and `repo_index_generate` are used as they are.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubi.ssh import Runner, SshHost

INDEX = "index.yaml"
# What `helm repo index` writes for an empty folder (minus the time stamp, so the file
# is the same on every host and run).
EMPTY_INDEX = "apiVersion: v1\nentries: {}\n"
LOCK = "/run/lock/kubi-charts.lock"
RETRIES = 3  # index changed by a concurrent publish: merge again, at most this often
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


class ChartError(Exception):
    """A chart cannot be published; the message says why and what to do."""


# --- Helm ------------------------------------------------------------------------------------


def _helm():
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise ChartError(
            f"Helm's SDK is not importable ({exc}); install it: pip install helm-python-sdk"
        ) from None
    return helm_python


def lint(chart: Path, kube_version: str | None = None) -> list[str]:
    """Run Helm's linter (strict: warnings fail too); return its messages as Helm prints
    them (`[ERROR] templates/: ...`). Raise ChartError with them when the chart fails."""
    helm = _helm()
    kube = f"v{kube_version.lstrip('v')}" if kube_version else None
    try:
        report = helm.lint(str(chart), strict=True, kube_version=kube)
    except helm.HelmError as exc:
        raise ChartError(f"{chart}: Helm could not lint it: {exc}") from None
    lines = [
        f"[{SEVERITY.get(m['severity'], 'UNKNOWN')}] {m['path']}: {m['error']}"
        if m.get("path")
        else f"[{SEVERITY.get(m['severity'], 'UNKNOWN')}] {m['error']}"
        for m in report.get("messages") or []
    ]
    errors = report.get("errors") or []
    if errors:
        shown = lines or [f"[ERROR] {e}" for e in errors]
        advice = (
            f"{chart}: Helm's lint refused the chart ({len(errors)} error(s); strict mode: "
            "warnings count too); fix it and publish again"
        )
        raise ChartError("\n".join([f"==> Linting {chart}", *shown, "", advice]))
    return lines


@dataclass(frozen=True)
class Packaged:
    name: str
    version: str
    archive: Path  # a .tgz

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def package(chart: Path, workdir: Path) -> Packaged:
    """A chart folder packaged by Helm into `workdir`, or a .tgz taken as it is."""
    helm = _helm()
    try:
        with helm.Chart.load(str(chart)) as loaded:
            name, version = loaded.name, loaded.version
        archive = (
            Path(helm.package(str(chart), destination=str(workdir))) if chart.is_dir() else chart
        )
    except helm.HelmError as exc:
        raise ChartError(f"{chart}: Helm could not load or package it: {exc}") from None
    return Packaged(name, version, archive)


def content_digest(archive: bytes) -> str:
    """sha256 over the files inside a chart archive (names and contents, not times)."""
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        for member in members:
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            digest.update(f"{member.name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    return digest.hexdigest()


def merged_index(current: bytes, filename: str, archive: bytes, workdir: Path) -> bytes:
    """The index with the archive added (or replacing its own name+version), every other
    entry kept: Helm's `repo index --merge` over a folder holding only that archive."""
    helm = _helm()
    folder = workdir / "index"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / filename).write_bytes(archive)
    existing = workdir / "current-index.yaml"
    existing.write_bytes(current)
    try:
        helm.repo_index_generate(str(folder), merge=str(existing))
    except helm.HelmError as exc:
        raise ChartError(
            f"the repository's index.yaml cannot be read by Helm ({exc}); restore it from a "
            "backup (or remove it and run deploys/charts.py for an empty one) before publishing"
        ) from None
    return (folder / INDEX).read_bytes()


# --- where the charts live: a folder on the repository host, reached through a shell ----------


class ChartStore:
    """The chart folder on the repository host, reached through a Runner (`kubi.ssh`).

    Reads are `cat`; a commit is one shell script fed a tar stream of the archive and the
    new index: under a lock, it installs both only if the index is still the one the merge
    started from, each with an atomic rename.
    """

    def __init__(self, runner: Runner, path: str):
        self.runner = runner
        self.path = path.rstrip("/") or "/"

    def read(self, name: str) -> bytes | None:
        target = shlex.quote(f"{self.path}/{name}")
        done = self.runner.run(f"if [ -e {target} ]; then cat {target}; else exit 44; fi")
        if done.returncode == 44:
            return None
        if done.returncode:
            raise ChartError(
                f"cannot read {self.path}/{name} on {self.runner.where}: "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout

    def commit(self, archive_name: str, archive: bytes | None, index: bytes, base: bytes) -> bool:
        """Install archive (when given) and index; False if the index changed meanwhile."""
        if "/" in archive_name or archive_name.startswith(".") or not archive_name:
            raise ChartError(f"{archive_name!r} is not a chart archive name (name-version.tgz)")
        stream = io.BytesIO()
        with tarfile.open(fileobj=stream, mode="w") as tar:
            for name, data in ((archive_name, archive), (INDEX, index)):
                if data is not None:
                    info = tarfile.TarInfo(name)
                    info.size, info.mode = len(data), 0o644
                    tar.addfile(info, io.BytesIO(data))
        q = shlex.quote
        # './' before every name: a chart named '-x' must never read as an option.
        install = "".join(
            f'install -m 644 -o root -g root "$tmp"/{q(name)} {q("./" + name + ".kubi-new")} && '
            f"mv -f {q('./' + name + '.kubi-new')} {q('./' + name)} && "
            for name in ((archive_name,) if archive is not None else ())
        )
        script = (
            f"set -e; cd {q(self.path)}; tmp=$(mktemp -d); trap 'rm -rf \"$tmp\"' EXIT; "
            'tar -x -C "$tmp"; '
            f"exec 9>{q(LOCK)}; flock -w 60 9; "
            f"now=$(sha256sum {INDEX} | cut -d' ' -f1); "
            f'if [ "$now" != {q(hashlib.sha256(base).hexdigest())} ]; then exit 45; fi; '
            f"{install}"
            f'install -m 644 -o root -g root "$tmp"/{INDEX} {INDEX}.kubi-new && '
            f"mv -f {INDEX}.kubi-new {INDEX}"
        )
        done = self.runner.run(script, stream.getvalue())
        if done.returncode == 45:
            return False
        if done.returncode:
            raise ChartError(
                f"cannot write to {self.path} on {self.runner.where}: "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return True


# --- publish ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    outcome: str  # "published", "replaced" or "unchanged"
    charts: int  # versions in the index afterwards


def publish(
    chart: Path,
    store: ChartStore,
    *,
    force: bool = False,
    kube_version: str | None = None,
    log: Callable[[str], object] = lambda line: None,
    linted: bool = True,
) -> Published:
    """Lint, package and publish `chart` (a folder or a .tgz) into the chart `store`.
    `linted=False`: an upstream archive pinned by its digest, published as it is."""
    chart = Path(chart)
    if not chart.exists():
        raise ChartError(f"{chart} does not exist: give a chart folder or a .tgz archive")
    for line in lint(chart, kube_version) if linted else ():
        log(line)
    with tempfile.TemporaryDirectory(prefix="kubi-chart-") as tmp:
        work = Path(tmp)
        packaged = package(chart, work)
        data = packaged.archive.read_bytes()
        upload: bytes | None = data  # what to write (None: the published archive stays)
        indexed = data  # the archive the index describes
        outcome = "published"
        remote = store.read(packaged.filename)
        if remote is not None:
            if content_digest(remote) == content_digest(data):
                upload, indexed, outcome = None, remote, "unchanged"  # keep the published one
            elif not force:
                raise ChartError(
                    f"{packaged.name} {packaged.version} is already published with other "
                    f"content ({store.path}/{packaged.filename} on "
                    f"{store.runner.where}); bump the chart's version, or replace it "
                    "with --force (clients that cached the old one will not notice)"
                )
            else:
                outcome = "replaced"
        for _ in range(RETRIES):
            current = store.read(INDEX)
            if current is None:
                raise ChartError(
                    f"no {INDEX} in {store.path} on {store.runner.where}: the chart "
                    "repository is not deployed; run deploys/charts.py first"
                )
            entries = (yaml.safe_load(current) or {}).get("entries") or {}
            if upload is None and _indexed(entries, packaged, remote):
                return Published(packaged.name, packaged.version, outcome, _count(entries))
            index = merged_index(current, packaged.filename, indexed, work)
            if store.commit(packaged.filename, upload, index, current):
                entries = (yaml.safe_load(index) or {}).get("entries") or {}
                return Published(packaged.name, packaged.version, outcome, _count(entries))
            log(f"{INDEX} changed during the publish (another publish?): merging again")
        raise ChartError(
            f"{INDEX} on {store.runner.where} kept changing during {RETRIES} attempts; try again"
        )


def mirror(
    archives: dict[str, Path], store: ChartStore, log: Callable[[str], object] = lambda line: None
) -> list[Published]:
    """Publish upstream chart archives (chart name -> its checked archive) as they are: the
    repository's index then lists the very digest that kubi/config/upstream_charts.toml
    pins. A name and version published with other content is refused, never replaced."""
    done = []
    for name in sorted(archives):
        published = publish(archives[name], store, log=log, linted=False)
        if published.name != name:
            raise ChartError(f"{archives[name]} holds the chart {published.name}, not {name}")
        done.append(published)
    return done


def _indexed(entries: dict, packaged: Packaged, archive: bytes | None) -> bool:
    digest = hashlib.sha256(archive or b"").hexdigest()
    return any(
        e.get("version") == packaged.version and e.get("digest") == digest
        for e in entries.get(packaged.name) or []
    )


def _count(entries: dict) -> int:
    return sum(len(versions or []) for versions in entries.values())


def chart_store_for(declared) -> tuple[ChartStore, SshHost]:
    """The chart store of a loaded inventory, over SSH (close the host after use)."""
    config = declared.config
    target = config.role("repository")[0]
    host = SshHost(target.name, declared.host_data(target.name))
    return ChartStore(host, config.charts.path), host
