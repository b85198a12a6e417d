"""Settings of the seed, the base every host gets first (deploys/seed.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubi.config.types import Address, PackageName, Section, TimeZone


class SeedSettings(Section):
    """The "seed" every host gets first."""

    upgrade: Literal["first", "always", "never"] = Field(
        "first",
        description="full system upgrade: on a host's first seeding, on every run, or never",
    )
    timezone: TimeZone = "Etc/UTC"
    ntp_servers: list[Address] = Field(
        default_factory=lambda: ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"]
    )
    extra_packages: list[PackageName] = Field(default_factory=list)
