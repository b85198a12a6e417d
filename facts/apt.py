"""Facts of the shared apt machinery (kubi/aptsource.py)."""

from __future__ import annotations

from pyinfra.api import FactBase

from kubi import aptsource


class AptKeyrings(FactBase):
    """
    What each vendor keyring holds, for `aptsource.keyring_ok`:

    .. code:: python

        {"/etc/apt/keyrings/kubi-containerd.gpg": None}  # absent; else its keys
    """

    def command(self, keyrings: tuple[str, ...]) -> str:
        return aptsource.keyrings_script(keyrings)

    def process(self, output: list[str]) -> dict:
        return aptsource.parse_keyrings(output)
