"""Facts of the seed (every host's base state), batched into one command."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

# Kernel config symbol of each module kubi needs: a built-in module has no /sys/module
# entry unless it has parameters, so the kernel config is the other place to look.
MODULE_CONFIG = {
    "overlay": "CONFIG_OVERLAY_FS",
    "br_netfilter": "CONFIG_BRIDGE_NETFILTER",
}

_SCRIPT = r"""
echo "hostname=$(hostname)"
echo "timezone=$(readlink /etc/localtime | sed 's|.*/zoneinfo/||')"
echo "container=$(systemd-detect-virt --container 2>/dev/null || echo none)"
echo "seeded=$([ -e {marker} ] && echo yes || echo no)"
# dpkg's journal (a killed install) or packages it reports half-installed or unconfigured
echo "dpkg_pending=$( (ls /var/lib/dpkg/updates 2>/dev/null; dpkg --audit 2>/dev/null) | grep -c .)"
echo "swap_active=$(tail -n +2 /proc/swaps 2>/dev/null | wc -l)"
echo "swap_fstab=$(grep -Ec '^[^#].*[[:space:]]swap[[:space:]]' /etc/fstab 2>/dev/null)"
cfg=$( (zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null) )
for pair in {modules}; do
  m=${{pair%%:*}}; sym=${{pair#*:}}
  if grep -qs "^$m " /proc/modules; then s=loaded
  elif grep -qs "/$m.ko" /lib/modules/$(uname -r)/modules.builtin; then s=builtin
  elif printf '%s\n' "$cfg" | grep -qx "$sym=y"; then s=builtin
  elif [ -d /sys/module/$m ]; then s=loaded
  else s=missing; fi
  echo "module.$m=$s"
done
for key in {sysctls}; do
  f=/proc/sys/$(echo "$key" | tr . /)
  echo "sysctl.$key=$(cat "$f" 2>/dev/null || echo '<absent>')"
done
"""


class SeedState(FactBase):
    """
    Everything the seed compares against, in one round trip:

    .. code:: python

        {
            "hostname": "cp1", "timezone": "Etc/UTC",
            "container": "systemd-nspawn",    # or None on a real server / VM
            "seeded": True,                   # the first-seed marker exists
            "swap_active": 0, "swap_fstab": 1,
            "dpkg_pending": 0,                # journal files and `dpkg --audit` lines
            "modules": {"overlay": "builtin", "br_netfilter": "missing"},
            "sysctl": {"net.ipv4.ip_forward": "1", "net.bridge.x": None},  # None: absent
        }
    """

    def command(self, marker: str, modules: tuple[str, ...] = (), sysctls: tuple[str, ...] = ()):
        pairs = " ".join(shlex.quote(f"{m}:{MODULE_CONFIG.get(m, 'NONE')}") for m in modules)
        keys = " ".join(shlex.quote(k) for k in sysctls)
        return _SCRIPT.format(marker=shlex.quote(marker), modules=pairs, sysctls=keys)

    def process(self, output: list[str]) -> dict:
        raw = dict(line.split("=", 1) for line in output if "=" in line)
        state: dict = {"modules": {}, "sysctl": {}}
        for key, value in raw.items():
            if key.startswith("module."):
                state["modules"][key[7:]] = value
            elif key.startswith("sysctl."):
                state["sysctl"][key[7:]] = None if value == "<absent>" else value
        state["hostname"] = raw.get("hostname", "")
        state["timezone"] = raw.get("timezone", "")
        state["container"] = None if raw.get("container", "none") == "none" else raw["container"]
        state["seeded"] = raw.get("seeded") == "yes"
        state["swap_active"] = int(raw.get("swap_active") or 0)
        state["swap_fstab"] = int(raw.get("swap_fstab") or 0)
        state["dpkg_pending"] = int(raw.get("dpkg_pending") or 0)
        return state
