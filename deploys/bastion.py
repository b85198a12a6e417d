"""bastion: people's accounts; the input host is the only way in.

One Unix account per person of the config (`users`): operators (role ops) on every
platform host with sudo, developers (role dev) on the input host only. Keys only: the
accounts have no usable password. On the input host, operators may jump to the other
hosts (`ssh -J`); developers may only forward to the input host's cockpit and Kubernetes
API stream. An account whose person left the config is removed with its home.

Keys are the config's alone: sshd reads each person's keys from a root-owned file,
/etc/ssh/authorized_keys/<user>, never from their home (which the person controls), so
a key a person adds to their own ~/.ssh/authorized_keys does not log in, and no root
operation of kubi acts in a home. The deploy's own account keeps the host's own setting.

    pyinfra inventories/lab.py deploys/bastion.py
"""

import shlex

from pyinfra import host
from pyinfra.operations import server

from facts.bastion import GROUPS, KEYS_DIR, KubiAccounts
from kubi import ops
from kubi.deploy import component, entry_script, me, platform
from kubi.templates import render


@component("bastion")
def bastion() -> None:
    cfg = platform()
    node = me()
    is_input = "input" in node.roles
    people = [u for u in cfg.users if is_input or u.role == "ops"]
    accounts = host.get_fact(KubiAccounts)

    missing_groups = [g for g in GROUPS if g not in accounts["groups"]]
    if missing_groups:
        server.shell(
            name=f"groups {' '.join(missing_groups)}",
            commands=[f"groupadd --system {shlex.quote(g)}" for g in missing_groups],
        )

    for person in people:
        group = f"kubi-{person.role}"
        # Names are UnixName (matched in full), quoted all the same; `~name` needs its
        # tilde unquoted, which the name's type makes safe.
        who, grp = shlex.quote(person.name), shlex.quote(group)
        member_of = [g for g, members in accounts["groups"].items() if person.name in members]
        if person.name not in accounts["users"]:
            server.shell(
                name=f"account {person.name} ({person.role})",
                commands=[
                    # useradd refuses a name some other account already has: no silent takeover.
                    f"useradd --create-home --shell /bin/bash --groups {grp} "
                    f"--comment {shlex.quote('kubi ' + person.role)} {who}",
                    # '*': no password can match, yet the account is not "locked" for sshd keys.
                    f"usermod --password '*' {who}",
                ],
            )
        elif member_of != [group]:
            server.shell(
                name=f"account {person.name} now {person.role}",
                commands=[f"gpasswd --delete {who} {shlex.quote(g)}" for g in member_of]
                + [f"gpasswd --add {who} {grp}"],
            )
    # The keys: root's files in root's folder, which sshd reads as each person (0644, 0755).
    folder = accounts["keys"]["folder"]
    if folder == "other":
        server.shell(
            name=f"folder {KEYS_DIR}",
            commands=[
                f"echo 'kubi: {KEYS_DIR} is not a folder; remove it and run again' >&2; exit 1"
            ],
        )
    elif folder != "root:root 755":
        server.shell(
            name=f"folder {KEYS_DIR}",
            commands=[f"install -d -m 755 -o root -g root {KEYS_DIR}"],
        )
    for person in people:
        ops.file(
            name=f"ssh keys of {person.name}",
            path=f"{KEYS_DIR}/{person.name}",
            content="".join(f"{key}\n" for key in person.keys),
        )
    wanted = {p.name for p in people}
    for name in sorted(set(accounts["keys"]["files"]) - wanted):
        ops.file(
            name=f"remove ssh keys of {name} (no longer in the config here)",
            path=f"{KEYS_DIR}/{name}",
            content=None,
        )
    # sshd reads only those files for kubi's people; written once the files are there.
    ops.file(
        name="ssh keys of people from /etc/ssh/authorized_keys only",
        path="/etc/ssh/sshd_config.d/15-kubi-keys.conf",
        content=render("bastion", "sshd-keys.conf", keys_dir=KEYS_DIR, deploy_user=node.ssh_user),
        check="sshd -t",
        reload="systemctl reload ssh",
    )

    for name in sorted(set(accounts["users"]) - wanted):
        server.shell(
            name=f"remove account {name} (no longer in the config)",
            commands=[
                f"pkill -KILL -u {shlex.quote(name)} || true",
                f"userdel --remove {shlex.quote(name)}",
            ],
        )

    ops.file(
        name="sudo for operators",
        path="/etc/sudoers.d/kubi-ops",
        content=render("bastion", "sudoers"),
        mode="440",
        check="visudo -c",
    )

    if is_input:
        ops.file(
            name="ssh forwarding policy (ops jump, devs local only)",
            path="/etc/ssh/sshd_config.d/20-kubi-bastion.conf",
            content=render(
                "bastion",
                "sshd-bastion.conf",
                dev_ports=[cfg.cockpit.port, cfg.cockpit.api_port],
            ),
            check="sshd -t",
            reload="systemctl reload ssh",
        )


if entry_script(__name__):
    bastion()
