"""Data files beside this module (version matrices, reserved names), checked when loaded.

A matrix is data a maintainer edits (a new Graylog series, a new Kubernetes minor),
so it lives in a TOML file, not in code. Loading it validates its shape; a malformed file
stops kubi with the file, the entry and what is wrong, before any platform is read.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, ValidationError, model_validator

from kubi.config.types import Section, Series

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


class KubernetesMinor(Section):
    """What kubi knows of one Kubernetes minor: where its packages come from."""

    packages: Annotated[str, AfterValidator(_channel)]


class KubernetesMatrix(Section):
    minor: dict[Series, KubernetesMinor] = Field(min_length=1)

    @model_validator(mode="after")
    def _channels_match(self) -> KubernetesMatrix:
        for series, entry in self.minor.items():
            if f"/v{series}/" not in entry.packages:
                raise ValueError(f"minor {series}: its packages channel must be for v{series}")
        return self


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
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
        raise MatrixError(f"{path}: " + "; ".join(problems)) from None


@cache
def kubernetes() -> KubernetesMatrix:
    """The supported Kubernetes minors (kubi/config/kubernetes.toml)."""
    return load("kubernetes", KubernetesMatrix)


@cache
def log_stack() -> LogStackMatrix:
    """The log stack's matrix (kubi/config/log_stack.toml)."""
    return load("log_stack", LogStackMatrix)


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
