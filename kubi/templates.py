"""Render the Jinja2 templates of `templates/<component>/`.

Values reach configuration files of several syntaxes (nginx, chrony, sshd, apt, YAML,
TOML, HTML). Their config types already admit no special character; the filters below are
the second line, one per syntax, and leave every valid value exactly as it was:

- `conf_word`: one word of a line-based configuration (nginx, chrony, sshd, apt.conf,
  apt-cacher-ng, /etc/hosts), refused at render time unless it is letters, digits and
  ``. _ : / @ + = * , -`` (no space, quote, ``;``, ``{``, ``$``, ``#``, ``\\``, newline);
- `yaml_string`: a YAML string, plain when YAML reads it back unchanged, else
  double-quoted and escaped;
- `toml_string`: a TOML basic string, quotes included, escaped;
- HTML: autoescaping in ``*.html`` templates.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from kubi.config.errors import label

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

_WORD = re.compile(r"[A-Za-z0-9._:/@+=*,-]+", re.ASCII)
_YAML_PLAIN = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9._/-]*", re.ASCII)


class TemplateValueError(ValueError):
    """A value that cannot be written safely into a configuration file."""


def conf_word(value: Any) -> str:
    text = str(value)
    if not _WORD.fullmatch(text):
        raise TemplateValueError(
            f"{label(text)} cannot be written into a configuration file: one word of letters, "
            "digits and . _ : / @ + = * , - is expected"
        )
    return text


def yaml_string(value: Any) -> str:
    text = str(value)
    # Plain only when YAML reads it back as this very string (not yes, null or 1.0).
    if _YAML_PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def toml_string(value: Any) -> str:
    # JSON's escapes (\" \\ \n \uXXXX ...) are TOML basic-string escapes.
    return json.dumps(str(value))


@cache
def _environment() -> jinja2.Environment:
    # StrictUndefined: a missing variable is an error at plan time, never an empty string
    # in a production config file.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
    )
    env.filters.update(conf_word=conf_word, yaml_string=yaml_string, toml_string=toml_string)
    return env


def render(component: str, name: str, **context: Any) -> str:
    """Render `templates/<component>/<name>.j2` with the given context."""
    return _environment().get_template(f"{component}/{name}.j2").render(**context)
