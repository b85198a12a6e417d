"""Helm releases of upstream charts, without a helm binary: Helm 4's own Go SDK, bundled in
`helm-python-sdk` (imported as `helm_python`), runs inside this process.

Charts are pinned and never vendored. A chart is either a local archive (the deployer's
copy, fetched from the platform's chart repository) or a `RepoChart`: repository URL, chart
name, exact version and the sha256 of its .tgz, downloaded and checked before Helm reads a
byte of it (Helm itself checks no digest of an HTTP repository's index).

Helm makes a new revision on every upgrade, even one that changes nothing. So
`install_or_upgrade` looks first, and leaves a release alone (no revision, "unchanged")
when it is deployed from the same chart name and version with the same values and a dry-run
upgrade renders the very manifest that is deployed.

Every failure is one `HelmError` naming the release (or the chart) and Helm's reason, on
one line: no Go stack trace, URL credentials and secret-looking values replaced by ***.

    outcome = install_or_upgrade(kubeconfig, RepoChart(url, "ingress-nginx", "4.11.3",
                                 sha256), "ingress", "ingress-nginx", {"controller": {...}})
    print(outcome)  # Helm release ingress-nginx/ingress: unchanged, revision 3 (...)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import helm_python as sdk
import yaml

TIMEOUT = 300  # seconds for one release action: its hooks, and its objects when waiting
MAX_HISTORY = 10  # revisions kept per release (Secrets in its namespace), as the CLI keeps
CAUSE_LIMIT = 1000  # characters of Helm's reason kept in a message

Action = Literal["installed", "upgraded", "unchanged"]

# exact versions only: a range would let the repository choose what gets installed
_VERSION = re.compile(r"v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_USERINFO = re.compile(r"(?<=://)[^/@\s\"']+@")
_GO_FRAME = re.compile(r"\.go:\d+|^goroutine \d+ \[")
# values under such keys never appear in a message (a chart's `fail` or the API server may
# quote them)
_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|secret|token|credential|api_?key|private_?key", re.IGNORECASE
)


class HelmError(Exception):
    """A chart could not be fetched or rendered, or a release action failed. The message
    names the release (or the chart) and gives Helm's reason on one line."""


@dataclass(frozen=True)
class RepoChart:
    """A chart of an HTTP(S) chart repository (one with an index.yaml), pinned to an exact
    version and to the sha256 of its .tgz (the `digest` the index lists)."""

    url: str  # the repository, e.g. https://repo.example/charts
    name: str
    version: str  # exact, e.g. 4.11.3
    sha256: str  # 64 hex digits, with or without a "sha256:" prefix
    username: str | None = None  # HTTP basic auth, e.g. the platform's pull account
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"chart {self.name} {self.version} from {_redact(self.url)}"


ChartSource = Path | str | RepoChart  # a local .tgz (or chart folder), or a pinned remote one


@dataclass(frozen=True)
class Release:
    """One revision of a release, as Helm stores it."""

    name: str
    namespace: str
    revision: int
    status: str  # deployed, superseded, failed, uninstalled, pending-install, ...
    chart: str  # name-version
    app_version: str

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> Release:
        """From the SDK's release summary."""
        chart = (summary.get("chart_name"), summary.get("chart_version"))
        return cls(
            name=summary["name"],
            namespace=summary["namespace"],
            revision=int(summary["revision"]),
            status=summary["status"],
            chart="-".join(part for part in chart if part),
            app_version=summary.get("app_version") or "",
        )

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} revision {self.revision} {self.status} ({self.chart})"


@dataclass(frozen=True)
class Outcome:
    """What `install_or_upgrade` did, and the release revision that is now current."""

    action: Action
    release: Release

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"

    def __str__(self) -> str:
        r = self.release
        return (
            f"Helm release {r.namespace}/{r.name}: {self.action}, revision {r.revision} ({r.chart})"
        )


# --- charts --------------------------------------------------------------------------------


def fetch(chart: RepoChart, folder: Path) -> Path:
    """Download `chart` into `folder` as <name>-<version>.tgz, once its sha256 is the pinned
    one: the deployer's own copy, for a site that cannot reach the repository later."""
    data = _download(chart, None)
    target = Path(folder) / f"{chart.name}-{chart.version}.tgz"
    target.write_bytes(data)
    return target


def template(
    chart: ChartSource,
    values: Mapping[str, Any] | None,
    release: str,
    namespace: str,
    crds: bool = True,
) -> list[dict[str, Any]]:
    """The objects `chart` renders for `release` in `namespace` with `values`, offline (no
    cluster: `lookup` finds nothing, capabilities are Helm's defaults), for kubi's own
    dry run and checks. The chart's CRDs come first (unless `crds` is false: values that
    turn off what uses them), then each template's objects, by template path; hooks and
    tests are included, NOTES.txt is not. Objects are as Helm renders them: a namespaced
    one may lack metadata.namespace (Helm puts it in `namespace`)."""
    what = _what(release, namespace)
    wanted = _plain(values, what)
    secrets = _secret_strings(wanted)
    with _loaded(chart, what, secrets) as loaded, _errors(what, "render", secrets):
        definitions = [(crd["filename"], crd["data"]) for crd in loaded.crds] if crds else []
        rendered = loaded.render(wanted, name=release, namespace=namespace)
    templates = sorted(
        (path, text) for path, text in rendered.items() if Path(path).name != "NOTES.txt"
    )
    objects = []
    for source, text in [*definitions, *templates]:
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:  # its own message would quote the rendered line
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            problem = getattr(error, "problem", None) or "not YAML"
            raise HelmError(f"{what}: {source} renders invalid YAML: {problem}{where}") from None
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict) or not document.get("kind"):
                raise HelmError(f"{what}: {source} renders a document that is no object")
            objects.append(document)
    return objects


# --- releases ------------------------------------------------------------------------------


def install_or_upgrade(
    kubeconfig: Path,
    chart: ChartSource,
    release: str,
    namespace: str,
    values: Mapping[str, Any] | None = None,
    *,
    wait: bool = False,
    timeout: int = TIMEOUT,
) -> Outcome:
    """Install `chart` as `release` in `namespace` (which must exist), or upgrade it to
    `chart` and `values`, or leave it alone when that changes nothing (see the module).

    `wait`: wait until its workloads are ready (Helm's watcher), up to `timeout` seconds;
    without it only hooks are waited for. A release whose last revision failed is upgraded.
    """
    what = _what(release, namespace)
    wanted = _plain(values, what)
    secrets = _secret_strings(wanted)
    strategy = "watcher" if wait else None
    with _loaded(chart, what, secrets) as loaded, _cluster(kubeconfig, namespace, what) as helm:
        deployed = _status(helm, release, what)
        if deployed is None:
            with _errors(what, "install", secrets):
                installed = helm.install(
                    loaded, release, wanted, namespace=namespace, wait=strategy, timeout=timeout
                )
            return Outcome("installed", Release.of(installed))
        if _unchanged(helm, loaded, release, namespace, wanted, deployed, what, secrets):
            return Outcome("unchanged", Release.of(deployed))
        with _errors(what, "upgrade", secrets):
            upgraded = helm.upgrade(
                loaded, release, wanted, namespace=namespace, wait=strategy, timeout=timeout,
                max_history=MAX_HISTORY,
            )  # fmt: skip
        return Outcome("upgraded", Release.of(upgraded))


def rollback(
    kubeconfig: Path,
    release: str,
    namespace: str,
    revision: int | None = None,
    *,
    wait: bool = False,
    timeout: int = TIMEOUT,
) -> Release:
    """Roll `release` back to `revision` (default: the one before the current), which makes
    a new revision with that revision's chart and values; returns it."""
    what = _what(release, namespace)
    with _cluster(kubeconfig, namespace, what) as helm:
        revisions = [r.revision for r in _history(helm, release, what)]
        if not revisions:
            raise HelmError(f"{what}: not installed, so there is nothing to roll back")
        target = revisions[-1] - 1 if revision is None else revision
        if target not in revisions or target == revisions[-1]:
            kept = ", ".join(str(r) for r in revisions[:-1]) or "none"
            raise HelmError(
                f"{what}: cannot roll back to revision {target} (current: {revisions[-1]}; "
                f"earlier revisions kept: {kept})"
            )
        with _errors(what, f"rollback to revision {target}"):
            helm.rollback(release, version=target, wait="watcher" if wait else None,
                          timeout=timeout)  # fmt: skip
        now = _status(helm, release, what)
    if now is None:
        raise HelmError(f"{what}: gone right after its rollback (uninstalled meanwhile?)")
    return Release.of(now)


def uninstall(
    kubeconfig: Path, release: str, namespace: str, *, wait: bool = False, timeout: int = TIMEOUT
) -> Release | None:
    """Remove `release`, the objects it made (except those its chart marks
    `helm.sh/resource-policy: keep`) and its history. Returns its last revision, or None
    when there was no such release: removing twice is no error."""
    what = _what(release, namespace)
    with _cluster(kubeconfig, namespace, what) as helm:
        try:
            removed = helm.uninstall(release, wait="watcher" if wait else None, timeout=timeout)
        except sdk.HelmNotFoundError:
            return None
        except sdk.HelmError as error:
            raise HelmError(f"{what}: uninstall failed: {_cause(error)}") from None
    return Release.of(removed["release"]) if removed.get("release") else None


def status(kubeconfig: Path, release: str, namespace: str) -> Release | None:
    """The current revision of `release`, or None when it is not installed."""
    what = _what(release, namespace)
    with _cluster(kubeconfig, namespace, what) as helm:
        current = _status(helm, release, what)
    return None if current is None else Release.of(current)


def history(kubeconfig: Path, release: str, namespace: str) -> list[Release]:
    """Every kept revision of `release`, oldest first; empty when it is not installed."""
    what = _what(release, namespace)
    with _cluster(kubeconfig, namespace, what) as helm:
        return _history(helm, release, what)


def releases(kubeconfig: Path, namespace: str) -> list[Release]:
    """The current revision of every release in `namespace`, whatever its status."""
    what = f"Helm releases of namespace {namespace}"
    with _cluster(kubeconfig, namespace, what) as helm, _errors(what, "list"):
        return [Release.of(summary) for summary in helm.list(all_states=True)]


# --- helpers -------------------------------------------------------------------------------


def _unchanged(
    helm: sdk.Config,
    loaded: sdk.Chart,
    release: str,
    namespace: str,
    wanted: dict[str, Any],
    deployed: Mapping[str, Any],
    what: str,
    secrets: set[str],
) -> bool:
    """True when an upgrade would change nothing: deployed from the same chart name and
    version with the same values, and a dry-run upgrade (rendered with the cluster, as the
    real one would be) gives the deployed manifest. Hooks are in no manifest: a chart's
    content under one version is fixed (`kubi charts publish` keeps it unless forced), so
    a change of hooks alone needs a new chart version. A chart that renders differently
    every time (random passwords, .Release.Revision) is upgraded on every run."""
    same_chart = (deployed.get("chart_name"), deployed.get("chart_version")) == (
        loaded.name,
        loaded.version,
    )
    if deployed["status"] != "deployed" or not same_chart:
        return False
    with _errors(what, "reading the deployed values", secrets):
        if (helm.get_values(release) or {}) != wanted:
            return False
    with _errors(what, "dry-run upgrade", secrets):
        planned = helm.upgrade(loaded, release, wanted, namespace=namespace, dry_run="server")
    return bool(planned.get("manifest") == deployed.get("manifest"))


def _status(helm: sdk.Config, release: str, what: str) -> dict[str, Any] | None:
    try:
        return helm.status(release)
    except sdk.HelmNotFoundError:
        return None
    except sdk.HelmError as error:
        raise HelmError(f"{what}: status failed: {_cause(error)}") from None


def _history(helm: sdk.Config, release: str, what: str) -> list[Release]:
    try:
        revisions = helm.history(release)
    except sdk.HelmNotFoundError:
        return []
    except sdk.HelmError as error:
        raise HelmError(f"{what}: history failed: {_cause(error)}") from None
    return sorted((Release.of(summary) for summary in revisions), key=lambda r: r.revision)


@contextmanager
def _cluster(kubeconfig: Path, namespace: str, what: str) -> Iterator[sdk.Config]:
    """Helm's connection to the cluster of `kubeconfig`, its release storage (Secrets) in
    `namespace`. It reads no KUBECONFIG and no ~/.kube/config."""
    if not Path(kubeconfig).is_file():
        raise HelmError(f"{what}: kubeconfig {kubeconfig} does not exist")
    with _errors(what, "configuring the cluster connection"):
        config = sdk.Config(kubeconfig_path=str(kubeconfig), namespace=namespace)
    with config:
        yield config


@contextmanager
def _loaded(chart: ChartSource, what: str, secrets: set[str]) -> Iterator[sdk.Chart]:
    if isinstance(chart, RepoChart):
        data = _offline(_download(chart, what))
        with _errors(what, f"loading {chart}", secrets):
            loaded = sdk.Chart.load_archive(data)
        if (loaded.name, loaded.version) != (chart.name, chart.version.lstrip("v")):
            loaded.close()
            raise HelmError(
                f"{what}: {chart} holds chart {loaded.name} {loaded.version}, not the one pinned"
            )
    else:
        path = Path(chart)
        if not path.exists():
            raise HelmError(
                f"{what}: chart {path} does not exist; fetch it from the chart repository "
                "first (kubi.helm.fetch)"
            )
        with _errors(what, f"loading chart {path}", secrets):
            if path.is_file():
                loaded = sdk.Chart.load_archive(_offline(path.read_bytes()))
            else:
                loaded = sdk.Chart.load(path)
    with loaded:
        yield loaded


def _offline(archive: bytes) -> bytes:
    """The chart archive with its values schemas made offline: Helm fetches each remote
    `$ref` (https://...) of a values.schema.json while it renders, and kubi renders without
    the internet, the same on an air-gapped deployer. Those references (Kubernetes' own
    schemas, for values copied into objects) are dropped; the rest of each schema still
    checks the values, and the objects are checked against Kubernetes' schemas by the
    unit tier and by the API server's dry run. An archive without them is returned as is."""
    changed = False

    def without_remote_refs(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(("http://", "https://")):
                changed = True
                node = {k: v for k, v in node.items() if k != "$ref"}
            return {k: without_remote_refs(v) for k, v in node.items()}
        if isinstance(node, list):
            return [without_remote_refs(v) for v in node]
        return node

    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            file = source.extractfile(member) if member.isfile() else None
            data = file.read() if file is not None else None
            if data is not None and Path(member.name).name == "values.schema.json":
                data = json.dumps(without_remote_refs(json.loads(data))).encode()
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue() if changed else archive


def _download(chart: RepoChart, what: str | None) -> bytes:
    """The archive of `chart`, its sha256 checked (Helm's pull checks no digest); messages
    name the release `what` it is for, if any, and the chart."""
    label = f"{what}: {chart}" if what else str(chart)
    if not _VERSION.fullmatch(chart.version):
        raise HelmError(
            f"{label}: the version must be exact (like 1.2.3), not a range: the repository "
            "must not choose what is installed"
        )
    expected = chart.sha256.lower().removeprefix("sha256:")
    if not _SHA256.fullmatch(expected):
        raise HelmError(f"{label}: sha256 {chart.sha256!r} is not 64 hex digits")
    secrets = {chart.password} if chart.password else set()
    with tempfile.TemporaryDirectory(prefix="kubi-helm-") as folder:
        with _errors(label, "download", secrets):
            sdk.pull(chart.name, repo_url=chart.url, version=chart.version, destination=folder,
                     username=chart.username, password=chart.password)  # fmt: skip
        archives = list(Path(folder).glob("*.tgz"))
        if len(archives) != 1:
            raise HelmError(f"{label}: the download left {len(archives)} archives")
        data = archives[0].read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise HelmError(
            f"{label}: sha256 mismatch: expected {expected}, found {found}; refused "
            "(re-published or tampered with?): check the repository, or pin the new digest"
        )
    return data


@contextmanager
def _errors(what: str, doing: str, secrets: set[str] | None = None) -> Iterator[None]:
    """The SDK's errors as one HelmError: `what`: `doing` failed: Helm's reason."""
    try:
        yield
    except sdk.HelmError as error:
        raise HelmError(f"{what}: {doing} failed: {_cause(error, secrets)}") from None


def _cause(error: sdk.HelmError, secrets: set[str] | None = None) -> str:
    """Helm's reason on one line: no Go stack frames, no URL credentials, no secret values."""
    detail = getattr(error, "detail", None) or str(error) or f"error code {error.code}"
    lines = []
    for line in detail.splitlines():
        if _GO_FRAME.search(line):
            break
        if line.strip():
            lines.append(line.strip())
    cause = _redact(" ".join(lines) or type(error).__name__)
    for secret in sorted(secrets or (), key=len, reverse=True):
        cause = cause.replace(secret, "***")
    return cause if len(cause) <= CAUSE_LIMIT else cause[: CAUSE_LIMIT - 3] + "..."


def _redact(text: str) -> str:
    """`text` without the user:password@ of URLs."""
    return _USERINFO.sub("***@", text)


def _what(release: str, namespace: str) -> str:
    what = f"Helm release {namespace}/{release}"
    with _errors(what, "checking the release name"):
        sdk.validate_release_name(release)
    return what


def _plain(values: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """`values` as the JSON Helm gets and gives back, so deployed values compare equal."""
    try:
        plain = json.loads(json.dumps(dict(values or {})))
    except (TypeError, ValueError) as error:
        raise HelmError(f"{what}: values must be plain data (JSON): {error}") from None
    return dict(plain)


def _secret_strings(values: Any, secret: bool = False) -> set[str]:
    """The strings of `values` under keys that name secrets (at any depth)."""
    if isinstance(values, Mapping):
        found: set[str] = set()
        for key, value in values.items():
            found |= _secret_strings(value, secret or bool(_SECRET_KEY.search(str(key))))
        return found
    if isinstance(values, list):
        return set().union(*(_secret_strings(value, secret) for value in values))
    return {values} if secret and isinstance(values, str) and len(values) >= 4 else set()
