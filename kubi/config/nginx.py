"""Settings of the raw nginx of the service hosts (deploys/nginx.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StrictInt

from kubi.config.types import Section


class NginxSettings(Section):
    """The raw nginx every service host gets; components add sites and streams to it."""

    worker_connections: Annotated[StrictInt, Field(ge=64)] = 1024
    server_tokens: StrictBool = False
