"""Settings of the log stack on the output host (deploys/graylog.py).

Its versions live in the platform-wide `versions` section, checked against the log
stack's compatibility matrix (kubi/config/log_stack.toml).
"""

from __future__ import annotations

from pydantic import Field, StrictBool

from kubi.config.types import HttpUrl, JvmHeap, Port, Section


class GraylogSettings(Section):
    """Graylog, its search backend (OpenSearch) and MongoDB, single node, on the output host."""

    install: StrictBool = True
    apt_mirror: HttpUrl | None = Field(
        None, description="base URL mirroring the upstream repositories; default: upstream"
    )
    graylog_heap: JvmHeap = "1g"
    opensearch_heap: JvmHeap = "1g"
    gelf_tcp_port: Port = 12201
    http_port: Port = 9000
