"""Example production inventory: copy it to inventories/<env>.py and edit.

Every host name below is a placeholder under `example.invalid` (a reserved name that never
resolves): replace them with your servers. Check your copy without connecting anywhere:

    kubi config check inventories/<env>.py     # every problem at once, or "ok"
    kubi config show inventories/<env>.py      # the effective config, defaults filled in

Then converge the platform, or one component:

    pyinfra inventories/<env>.py deploys/all.py
    pyinfra inventories/<env>.py deploys/nginx.py

Settings live in this one file (not in a shared group_data/ folder) so that two
environments can never pick up each other's data. Every field and its default is
documented in kubi/config/ (one module per section); unknown fields are refused.
"""

from kubi.inventory import declare

platform = declare(
    __file__,
    name="prod",
    # One group per role. A host is a name, or (name, {per-host data}).
    groups={
        "input": ["bastion.example.invalid"],  # SSH bastion + cockpit: the only way in
        "output": ["logs.example.invalid"],  # Graylog
        "repository": ["delivery.example.invalid"],  # registry, chart repo, package proxy
        # 1, 3 or 5 nodes (etcd quorum). `ip` is the host-network address used in /etc/hosts
        # and by the cluster; it defaults to `address` when that is an IP.
        "control_plane": [
            "cp1.example.invalid",
            "cp2.example.invalid",
            "cp3.example.invalid",
        ],
        "workers": [
            "worker1.example.invalid",
            "worker2.example.invalid",
            "worker3.example.invalid",
        ],
    },
    # Data for every host of a group (address, ip, ssh_user, ssh_port, ssh_key).
    group_data={},
    domain="prod.example.invalid",
    ssh={
        "user": "root",  # or an admin account with passwordless sudo
        # "key": "~/.ssh/kubi_prod",  # default: your ssh-agent and ~/.ssh keys
        "strict_host_key_checking": "yes",
    },
    network={
        "pod_cidr": "10.233.64.0/18",
        "service_cidr": "10.233.0.0/18",
        # "host_cidrs": ["10.10.0.0/24"],  # when set, every host ip must be inside
    },
    # Hosts install through the repository host's package proxy (offline goal):
    # apt_proxy="http://delivery.example.invalid:3142",
    seed={"upgrade": "first", "timezone": "Europe/Paris"},
    # Where you deploy from directly (not through the input host): every host but the input
    # host takes SSH only from the input host and these networks (README, "Host firewalls").
    # firewall={"admin_networks": ["10.10.0.5/32"]},
)

globals().update(platform.pyinfra_groups())
