"""registry: the Docker registry of the repository host, and every host's trust in it.

On the repository host: Debian's `docker-registry` (distribution v2) on 127.0.0.1:5000
only, behind the raw nginx (deploys/nginx.py) with TLS on `registry.port` and basic auth
(kubi-push writes, kubi-pull reads; see kubi/registry.py). The TLS server includes
/etc/nginx/repository.d/*.conf: other repository services (charts) add locations there.

On every host: the platform CA in the system trust store (unless the operator gave the
server certificate). On Kubernetes nodes also containerd's registry folder
(/etc/containerd/certs.d/<repository alias>[:port]/hosts.toml and ca.crt).

    pyinfra inventories/lab.py deploys/registry.py
"""

import shlex

from pyinfra.operations import files, server

import kubi.images
import kubi.registry
from kubi import nginx, ops
from kubi.deploy import component, entry_script, me, platform
from kubi.secrets import for_platform
from kubi.templates import render


@component("registry")
def registry() -> None:
    cfg = platform()
    node = me()
    secrets = for_platform(cfg)

    # --- the registry itself (repository host) ---------------------------------------------------
    if "repository" in node.roles:
        # The configuration goes first: on a first install the package starts the service at
        # once, and it must start on the loopback, never on the package's default `:5000`.
        # (dpkg keeps a conffile that exists before the install; APT_OPTS keep it on upgrades.)
        config = ops.file(
            name="registry configuration",
            path=kubi.registry.CONFIG_FILE,
            content=render(
                "registry",
                "config.yml",
                storage_path=cfg.registry.storage_path,
                listen=kubi.registry.UPSTREAM,
            ),
            make_dirs=True,
        )
        install = ops.packages(name="registry package", names=["docker-registry"])
        files.directory(
            name=f"registry storage {cfg.registry.storage_path}",
            path=cfg.registry.storage_path,
            user=kubi.registry.SERVICE_USER,
            group=kubi.registry.SERVICE_USER,
            mode="750",
        )
        if config.will_change and not install.will_change:
            # The registry has no reload; a fresh install already started with this file.
            server.shell(
                name="restart registry (configuration changed)",
                commands=[f"systemctl restart {shlex.quote(kubi.registry.SERVICE)}"],
            )
        ops.service(name="registry running", unit=kubi.registry.SERVICE)

        # --- nginx in front: TLS, accounts, proxy ---------------------------------------------
        names = kubi.registry.server_names(cfg, node.name, node.short_name)
        # Certificate and key in one 0600 file, swapped atomically, checked by `nginx -t`
        # before nginx reloads (a renewed pair never meets a stale half).
        ops.file(
            name="repository TLS certificate and key",
            path=kubi.registry.TLS_FILE,
            content=kubi.registry.tls_pem(cfg, names),
            mode="600",
            check=nginx.CHECK,
            reload=nginx.RELOAD,
            make_dirs=True,
        )
        # Read by the nginx workers (www-data) at each request: no reload needed.
        ops.file(
            name="registry pull accounts (htpasswd)",
            path=kubi.registry.PULL_HTPASSWD,
            content=kubi.registry.htpasswd(secrets, ("push", "pull")),
            mode="640",
            group="www-data",
            make_dirs=True,
        )
        ops.file(
            name="registry push account (htpasswd)",
            path=kubi.registry.PUSH_HTPASSWD,
            content=kubi.registry.htpasswd(secrets, ("push",)),
            mode="640",
            group="www-data",
        )
        files.directory(
            name=f"repository extension folder {kubi.registry.EXTENSION_DIR}",
            path=kubi.registry.EXTENSION_DIR,
            mode="755",
        )
        nginx.site(
            kubi.registry.NGINX_SITE,
            render(
                "registry",
                "site.conf",
                port=cfg.registry.port,
                server_names=names,
                tls_file=kubi.registry.TLS_FILE,
                realm=kubi.registry.REALM,
                pull_htpasswd=kubi.registry.PULL_HTPASSWD,
                push_htpasswd=kubi.registry.PUSH_HTPASSWD,
                anonymous_pull=cfg.registry.anonymous_pull,
                upstream=kubi.registry.UPSTREAM,
                extension_dir=kubi.registry.EXTENSION_DIR,
            ),
        )

    # --- trust (every host) ----------------------------------------------------------------------
    # With an operator-given certificate, its issuer is trusted by means outside kubi (a company
    # CA already on the hosts): kubi installs no CA, and removes the one it may have installed.
    ca = kubi.registry.platform_ca(cfg) if kubi.registry.uses_platform_ca(cfg) else None
    ops.file(
        name=f"platform CA trusted by the system (kubi-{cfg.name})",
        path=kubi.registry.system_ca_file(cfg),
        content=ca,
        reload="update-ca-certificates --fresh",
    )

    # --- containerd (Kubernetes nodes) -----------------------------------------------------------
    if node.is_kubernetes_node:
        folder = kubi.registry.containerd_dir(cfg)
        ca_file = f"{folder}/ca.crt"
        pull = None if cfg.registry.anonymous_pull else kubi.registry.account(secrets, "pull")
        ops.file(
            name="containerd registry CA",
            path=ca_file,
            content=ca,
            make_dirs=True,
        )
        registry_url = kubi.registry.url(cfg)
        # folder under certs.d: (the upstream registry it mirrors, or None for the registry
        # itself; the one server containerd pulls from, or None to remove the file)
        hosts: list[tuple[str, str | None, str | None]] = [
            (kubi.registry.endpoint(cfg), None, registry_url)
        ]
        # With the images component, each upstream registry of the platform's images is
        # pulled from the platform registry's copies alone (kubi/images.py); without, the
        # files are removed and nodes pull from upstream.
        mirrored = kubi.images.from_platform_registry(cfg)
        for origin in kubi.images.upstream_registries(cfg):
            hosts.append((origin, origin, f"{registry_url}/v2/{origin}" if mirrored else None))
        for name, upstream, server_url in hosts:
            content: str | None = None
            if server_url is not None:
                content = render(
                    "registry",
                    "hosts.toml",
                    certs_dir=kubi.registry.CONTAINERD_CERTS_DIR,
                    mirrored=upstream,
                    server=server_url,
                    ca_file=ca_file if ca else None,
                    authorization=pull.basic() if pull else None,
                )
            ops.file(
                name=f"containerd hosts.toml of {name}",
                path=f"{kubi.registry.CONTAINERD_CERTS_DIR}/{name}/hosts.toml",
                content=content,
                mode="600",  # holds the pull account's credentials
                make_dirs=True,
            )


if entry_script(__name__):
    registry()
