"""Settings of the images component (deploys/images.py): the platform's container images
copied into its own registry, for platforms whose nodes must not pull from the internet."""

from __future__ import annotations

from pydantic import Field

from kubi.config.types import LocalPath, Section


class ImagesSettings(Section):
    """Where the repository host takes the images it copies into the platform registry."""

    archives: LocalPath | None = Field(
        None,
        description="a folder on the deployer holding one OCI image archive per image "
        "(<name>_<tag>.tar, as `skopeo copy ... oci-archive:` writes them); default: the "
        "repository host copies them from their upstream registries with skopeo",
    )
