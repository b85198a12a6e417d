"""all: converge the whole platform, component by component, in order.

    pyinfra inventories/lab.py deploys/all.py

Each component is also a deploy of its own (`deploys/<component>.py`) for a redeploy.
One include per line, not a loop: pyinfra identifies an operation by the line numbers of
its call stack, so two components included from the same line could be confused.
"""

from pyinfra import local

local.include("deploys/seed.py")
local.include("deploys/nginx.py")
