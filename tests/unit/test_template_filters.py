"""Values written into configuration files go through the escape of the file's syntax.

The config types already refuse every special character (tests/unit/test_config_strings.py);
these tests hand the templates hostile values directly, as if a type regressed, and check
that nothing rides along: a refusal at render time, or an escape that reads back as the
value itself.
"""

from __future__ import annotations

import tomllib

import pytest
import yaml

from kubi.templates import TemplateValueError, conf_word, render, toml_string, yaml_string

HOSTILE = [
    "pool.ntp.org\nserver evil.invalid",
    "a\rb",
    "a\tb",
    "a\x00b",
    "a b",
    'a"b',
    "a'b",
    "a;b",
    "a{b",
    "a}b",
    "$host",
    "a#b",
    "a\\b",
    "",
]


@pytest.mark.parametrize("value", ["pool.ntp.org", "http://10.0.0.1:3142", "/var/lib/x", "a@b"])
def test_conf_word_keeps_a_word_as_it_is(value):
    assert conf_word(value) == value


@pytest.mark.parametrize("value", HOSTILE)
def test_conf_word_refuses_anything_else(value):
    with pytest.raises(TemplateValueError, match="cannot be written into a configuration file"):
        conf_word(value)


@pytest.mark.parametrize("value", [*HOSTILE, "/var/lib/docker-registry", "- x", "yes", "1.0"])
def test_yaml_string_reads_back_as_the_value(value):
    assert yaml.safe_load(f"key: {yaml_string(value)}\n") == {"key": value}


def test_yaml_string_leaves_a_plain_path_plain():
    assert yaml_string("/var/lib/docker-registry") == "/var/lib/docker-registry"


@pytest.mark.parametrize("value", [*HOSTILE, "https://repository.kubi.internal:5443"])
def test_toml_string_reads_back_as_the_value(value):
    assert tomllib.loads(f"key = {toml_string(value)}\n") == {"key": value}


@pytest.mark.parametrize(
    ("component", "template", "context"),
    [
        ("seed", "chrony.conf", {"ntp_servers": ["pool.ntp.org\nserver evil.invalid"]}),
        ("seed", "apt-proxy.conf", {"apt_proxy": 'http://p:3142";\nAcquire::x "y'}),
        ("seed", "hosts", {"entries": [{"ip": "10.0.0.1", "names": ["a\n10.6.6.6 b"]}]}),
        ("seed", "sshd-hardening.conf", {"deploy_user": "admin\nPermitRootLogin yes"}),
        ("package_proxy", "acng.conf", {"port": 3142, "upstream_proxy": "http://p\nPort: 1"}),
        (
            "charts",
            "location.conf",
            {"charts_path": "/x; } location / { root /", "anonymous_pull": True,
             "realm": "r", "pull_htpasswd": "/h"},
        ),
    ],
)  # fmt: skip
def test_line_based_templates_refuse_a_value_that_would_add_a_line(component, template, context):
    with pytest.raises(TemplateValueError):
        render(component, template, **context)


def test_registry_files_escape_what_they_cannot_refuse():
    hostile = "/srv/reg\nhttp:\n  addr: 0.0.0.0:5000"
    config = yaml.safe_load(
        render("registry", "config.yml", storage_path=hostile, listen="127.0.0.1:5000")
    )
    assert config["storage"]["filesystem"]["rootdirectory"] == hostile
    assert config["http"]["addr"] == "127.0.0.1:5000"
    url = 'https://r"]\n[host."https://evil.invalid"'
    hosts = tomllib.loads(
        render("registry", "hosts.toml", certs_dir="/c", server=url, host_url=url,
               mirrored=None, ca_file="/c/ca.crt", authorization='x"\nserver = "evil')
    )  # fmt: skip
    assert hosts["server"] == url and list(hosts["host"]) == [url]
    assert hosts["host"][url]["header"]["Authorization"] == 'Basic x"\nserver = "evil'


def test_the_cockpit_page_escapes_html():
    page = render("cockpit", "index.html", platform="<script>x</script>", uis=[], port=1,
                  api_port=2)  # fmt: skip
    assert "<script>" not in page and "&lt;script&gt;" in page
