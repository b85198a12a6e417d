"""all: converge the whole platform, component by component, in order.

    pyinfra inventories/lab.py deploys/all.py

Each component is also a deploy of its own (`deploys/<component>.py`) for a redeploy.
One include per line, not a loop: pyinfra identifies an operation by the line numbers of
its call stack, so two components included from the same line could be confused.
"""

from pyinfra import local

# The package proxy first: with package_proxy.for_all_hosts the seed of every other host
# installs through it.
local.include("deploys/package_proxy.py")
local.include("deploys/seed.py")
local.include("deploys/nginx.py")
local.include("deploys/bastion.py")
local.include("deploys/cockpit.py")
local.include("deploys/registry.py")  # every host trusts the CA; repository host: registry
local.include("deploys/charts.py")  # served by the registry's TLS server
local.include("deploys/graylog.py")
