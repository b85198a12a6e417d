"""Settings of the bastion: the people of the platform (deploys/bastion.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from kubi.config.types import PublicKey, Section, UnixName


class User(Section):
    """A person: one Unix account on the input host (and, for ops, on every host)."""

    name: UnixName
    role: Literal["ops", "dev"]
    keys: Annotated[list[PublicKey], Field(min_length=1)]
