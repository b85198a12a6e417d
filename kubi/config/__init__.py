"""The platform description, validated into one typed config object.

An inventory file describes the platform once (hosts per role group, per-group and
per-host data, platform settings). `validate()` turns that description into a `Platform`
or raises `ConfigError` listing *every* problem at once, each naming the group or host,
the field and what to do. Deploys only ever read the `Platform`.

Where things are:

- `types`: the field types, each matched in full (host names, CIDRs, ports, URLs, ...);
- `common`, `versions`: platform-wide sections (SSH, network ranges, pinned versions);
- `<component>`: one settings model per component (seed, nginx, bastion, ...);
- `matrices` and the `*.toml` files beside it: version matrices, checked at load;
- `topology`: checks across groups, hosts and ranges;
- `errors`: messages in the user's terms;
- `platform`: `Settings` (the explicit assembly of every section), `Platform`, `validate`.
"""

from kubi.config.bastion import User
from kubi.config.common import HostData, NetworkSettings, SshSettings
from kubi.config.errors import ConfigError
from kubi.config.platform import Description, Host, Platform, Settings, validate
from kubi.config.versions import Versions
from kubi.roles import KUBERNETES_ROLES, ROLES, SINGLE_HOST_ROLES, Role

__all__ = [
    "KUBERNETES_ROLES",
    "ROLES",
    "SINGLE_HOST_ROLES",
    "ConfigError",
    "Description",
    "Host",
    "HostData",
    "NetworkSettings",
    "Platform",
    "Role",
    "Settings",
    "SshSettings",
    "User",
    "Versions",
    "validate",
]
