"""all: converge the whole platform, component by component, in the order of the list.

    pyinfra inventories/lab.py deploys/all.py

The components and their order are `kubi.components.COMPONENTS`; each one is the deploy
function of `deploys/<component>.py`, also runnable alone for a redeploy. Every host walks
the same list (`host.loop`), so an operation of one component is the same operation on
every host, and the components that are off or not for this host's roles do nothing.
`deploy_function` calls each one so that pyinfra runs its operations after those of the
components before it (kubi.deploy._in_order).
"""

from pyinfra import host

from kubi.deploy import deploy_function, platform

for component in host.loop(platform().enabled_components):
    deploy_function(component)()
