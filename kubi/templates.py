"""Render the Jinja2 templates of `templates/<component>/`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


@cache
def _environment() -> jinja2.Environment:
    # StrictUndefined: a missing variable is an error at plan time, never an empty string
    # in a production config file.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(component: str, name: str, **context: Any) -> str:
    """Render `templates/<component>/<name>.j2` with the given context."""
    return _environment().get_template(f"{component}/{name}.j2").render(**context)
