"""charts: the Helm chart repository of the repository host.

Static files in `charts.path` (index.yaml and the chart archives), served read-only by the
repository TLS server of deploys/registry.py at https://<repository alias>/charts/ through
its extension folder, with the registry's read policy (the pull account, or anyone with
`registry.anonymous_pull`). Charts arrive only with `kubi charts publish` (over SSH).

The first deploy writes an empty, valid index.yaml; later deploys never touch it (it holds
every published chart).

    pyinfra inventories/lab.py deploys/charts.py
"""

from pyinfra.operations import files

from kubi import charts, nginx, ops, registry
from kubi.deploy import me, platform
from kubi.templates import render

cfg = platform()
folder = cfg.charts.path.rstrip("/") or "/"

if "repository" in me().roles:
    files.directory(name=f"chart folder {folder}", path=folder, mode="755")
    ops.file_once(
        name="empty chart index (first deploy only)",
        path=f"{folder}/{charts.INDEX}",
        content=charts.EMPTY_INDEX,  # the index is the repository's state: never reset
    )
    # Also made by deploys/registry.py: a redeploy of charts alone must not depend on it.
    files.directory(
        name=f"repository extension folder {registry.EXTENSION_DIR}",
        path=registry.EXTENSION_DIR,
        mode="755",
    )
    ops.file(
        name="nginx location /charts/",
        path=f"{registry.EXTENSION_DIR}/charts.conf",
        content=render(
            "charts",
            "location.conf",
            charts_path=folder,
            anonymous_pull=cfg.registry.anonymous_pull,
            realm=registry.REALM,
            pull_htpasswd=registry.PULL_HTPASSWD,
        ),
        check=nginx.CHECK,
        reload=nginx.RELOAD,
    )
