"""all: converge the whole platform, component by component, in order.

    pyinfra inventories/lab.py deploys/all.py

Each component is also a deploy of its own (`deploys/<component>.py`) for a redeploy.
"""

from pyinfra import local

COMPONENTS = ["seed", "nginx"]

for component in COMPONENTS:
    local.include(f"deploys/{component}.py")
