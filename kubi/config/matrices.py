"""Data files beside this module (version matrices, reserved names), checked when loaded.

A matrix is data a maintainer edits (a new Graylog series, a new Kubernetes minor),
so it lives in a TOML file, not in code. Loading it validates its shape; a malformed file
stops kubi with the file, the entry and what is wrong, before any platform is read.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)

from kubi.config.types import IMAGE_NAME, IMAGE_PINNED, Section, Series, Version, full

DATA_DIR = Path(__file__).resolve().parent


def series_key(series: str) -> tuple[int, int]:
    """'2.15' or '2.15.0' -> (2, 15), for comparing release series."""
    major, minor = series.split(".")[:2]
    return int(major), int(minor)


def _channel(value: str) -> str:
    if not re.fullmatch(r"https://pkgs\.k8s\.io/core:/stable:/v[0-9]+\.[0-9]+/deb/", value):
        raise ValueError(
            "must be a pkgs.k8s.io channel, e.g. 'https://pkgs.k8s.io/core:/stable:/v1.31/deb/'"
        )
    return value


class SeriesRange(Section):
    """[lowest, highest] series, both included."""

    low: Series
    high: Series

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: object) -> object:
        if isinstance(value, list):
            if len(value) != 2:
                raise ValueError("must be [lowest, highest]")
            return {"low": value[0], "high": value[1]}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SeriesRange:
        if series_key(self.low) > series_key(self.high):
            raise ValueError(f"lowest {self.low} is above highest {self.high}")
        return self

    def __contains__(self, version: str) -> bool:
        return series_key(self.low) <= series_key(version) <= series_key(self.high)


class LogStackRow(Section):
    """What one Graylog series supports."""

    opensearch: SeriesRange
    mongodb: SeriesRange


class LogStackMatrix(Section):
    graylog: dict[Series, LogStackRow] = Field(min_length=1)


def _date(value: object) -> object:
    """A TOML date (2026-06-28) or the same as a string; nothing else (no timestamp)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value, re.ASCII):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("must be a date like 2026-06-28")


Date = Annotated[dt.date, BeforeValidator(_date)]

# The kubeadm configuration APIs kubi writes. kubeadm 1.30 carries v1beta4 only as an
# experimental API (refused without --allow-experimental-api); 1.31 releases it.
KubeadmApi = Literal["kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"]
V1BETA4 = "kubeadm.k8s.io/v1beta4"
V1BETA4_SINCE = "1.31"

EtcdTag = Annotated[
    StrictStr,
    AfterValidator(
        full(r"[0-9]+\.[0-9]+\.[0-9]+-[0-9]+", "must be an etcd image tag like '3.5.21-0'")
    ),
]
CoreDnsTag = Annotated[
    StrictStr,
    AfterValidator(full(r"v[0-9]+\.[0-9]+\.[0-9]+", "must be a CoreDNS tag like 'v1.12.0'")),
]
PauseTag = Annotated[
    StrictStr, AfterValidator(full(r"[0-9]+\.[0-9]+(\.[0-9]+)?", "must be a pause tag like '3.10'"))
]


class KubeadmImages(Section):
    """The images kubeadm of one patch release deploys (`kubeadm config images list`), so
    that a deploy can name them without asking kubeadm or a registry."""

    patch: Version  # the release these were read from
    etcd: EtcdTag
    coredns: CoreDnsTag
    pause: PauseTag


class KubernetesMinor(Section):
    """What kubi knows of one Kubernetes minor: where its packages come from, the kubeadm
    API it writes, the images of its reference patch, the containerd series it runs on and
    its upstream end of life."""

    packages: Annotated[str, AfterValidator(_channel)]
    kubeadm_api: KubeadmApi
    images: KubeadmImages
    containerd: SeriesRange
    end_of_life: Date


class KubernetesMatrix(Section):
    minor: dict[Series, KubernetesMinor] = Field(min_length=1)

    @model_validator(mode="after")
    def _entries_match_their_minor(self) -> KubernetesMatrix:
        for series, entry in self.minor.items():
            if f"/v{series}/" not in entry.packages:
                raise ValueError(f"minor {series}: its packages channel must be for v{series}")
            if not entry.images.patch.startswith(f"{series}."):
                raise ValueError(
                    f"minor {series}: images.patch {entry.images.patch} is not a {series} release"
                )
            if entry.kubeadm_api == V1BETA4 and series_key(series) < series_key(V1BETA4_SINCE):
                raise ValueError(
                    f"minor {series}: kubeadm_api {V1BETA4} is released from {V1BETA4_SINCE} on"
                )
        return self

    @property
    def supported(self) -> list[str]:
        """The minors, oldest first."""
        return sorted(self.minor, key=series_key)


M = TypeVar("M", bound=Section)


class MatrixError(Exception):
    """A matrix file that kubi cannot use; the message names the file and the entry."""


def load(name: str, model: type[M], directory: Path = DATA_DIR) -> M:
    """Read and check `<directory>/<name>.toml` against `model`."""
    path = directory / f"{name}.toml"
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MatrixError(f"{path}: cannot be read as TOML ({exc}); fix the file") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise MatrixError(f"{path}: " + "; ".join(map(_problem, exc.errors()))) from None


def _problem(err: Any) -> str:
    message = err["msg"].removeprefix("Value error, ")
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {message}" if where else message  # a whole-file check names its entry


@cache
def kubernetes() -> KubernetesMatrix:
    """The supported Kubernetes minors (kubi/config/kubernetes.toml)."""
    return load("kubernetes", KubernetesMatrix)


class UnsupportedKubernetes(ValueError):
    """A Kubernetes version whose minor is not in kubi/config/kubernetes.toml."""


def kubernetes_minor(version: str) -> KubernetesMinor:
    """The table's entry for a Kubernetes version ('1.33.3'), for deploy code; a minor
    outside the table raises UnsupportedKubernetes naming the supported ones."""
    table = kubernetes()
    minor = ".".join(version.split(".")[:2])
    entry = table.minor.get(minor)
    if entry is None:
        raise UnsupportedKubernetes(
            f"minor {minor} is not supported by kubi (kubi/config/kubernetes.toml); "
            f"supported: {', '.join(table.supported)}"
        )
    return entry


@cache
def log_stack() -> LogStackMatrix:
    """The log stack's matrix (kubi/config/log_stack.toml)."""
    return load("log_stack", LogStackMatrix)


# --- upstream charts ---------------------------------------------------------------------


ChartDigest = Annotated[
    StrictStr, AfterValidator(full(r"[0-9a-f]{64}", "must be a sha256: 64 lower-case hex digits"))
]
ChartRepository = Annotated[
    StrictStr,
    AfterValidator(
        full(r"https://[a-z0-9.-]+(/[A-Za-z0-9._/-]*)?/", "must be a https:// URL ending in '/'")
    ),
]
ChartName = Annotated[StrictStr, AfterValidator(full(r"[a-z][a-z0-9-]{0,52}", "must be a name"))]
ImageName = Annotated[
    StrictStr, AfterValidator(full(IMAGE_NAME, "must be an image as <registry>/<path>:<tag>"))
]
PinnedImage = Annotated[
    StrictStr,
    AfterValidator(
        full(IMAGE_PINNED, "must be an image as <registry>/<path>:<tag>@sha256:<digest>")
    ),
]


class UpstreamChart(Section):
    """One upstream Helm chart kubi installs: pinned by version and by the sha256 of its
    archive as the repository's index.yaml records it, with the Kubernetes minors upstream
    tests that release on, and the images its objects run as kubi renders them."""

    repository: ChartRepository
    version: Version
    digest: ChartDigest
    kubernetes: SeriesRange
    images: list[PinnedImage] = []
    # upstream publishes no digest for these: copied and run by tag until one is pinned
    images_by_tag: list[ImageName] = []

    @property
    def all_images(self) -> list[str]:
        return [*self.images, *self.images_by_tag]


class UpstreamCharts(Section):
    chart: dict[ChartName, UpstreamChart]


@cache
def upstream_charts() -> UpstreamCharts:
    """The upstream charts kubi installs (kubi/config/upstream_charts.toml)."""
    return load("upstream_charts", UpstreamCharts)


def upstream_chart(name: str) -> UpstreamChart:
    return upstream_charts().chart[name]


class AddonImage(Section):
    ref: PinnedImage


class AddonImages(Section):
    image: dict[ChartName, AddonImage]


@cache
def addon_images() -> AddonImages:
    """The images of the add-ons kubi renders itself (kubi/config/addon_images.toml)."""
    return load("addon_images", AddonImages)


def addon_image(name: str) -> str:
    return addon_images().image[name].ref


class SystemAccounts(Section):
    """Names a person may never take, by where they come from."""

    debian_base: list[str]
    debian_services: list[str]
    platform_services: list[str]


@cache
def system_accounts() -> frozenset[str]:
    """Names a person may never take (kubi/config/system_accounts.toml)."""
    data = load("system_accounts", SystemAccounts)
    return frozenset(data.debian_base + data.debian_services + data.platform_services)
