"""Plans of deploys/charts.py: the chart folder, a first empty index (never overwritten) and
the /charts/ location in the repository TLS server, on the repository host only."""

from __future__ import annotations

import pytest
import yaml

from .conftest import managed
from .harness import plan, uploads

DEPLOY = "deploys/charts.py"
INDEX = "/var/lib/kubi/charts/index.yaml"
LOCATION = "/etc/nginx/repository.d/charts.conf"
DIRS = ("/var/lib/kubi/charts", "/etc/nginx/repository.d")


def fresh_facts():
    return {
        "files.Directory": {f"path={d}": None for d in DIRS},
        "kubi.facts.ManagedFile": {f"path={INDEX}": None, f"path={LOCATION}": None},
    }


def converged_facts(description, published="apiVersion: v1\nentries:\n  demo: []\n"):
    written = uploads(plan(DEPLOY, "repo1", description, fresh_facts()))
    return {
        "files.Directory": {
            f"path={d}": {"mode": 755, "user": "root", "group": "root"} for d in DIRS
        },
        "kubi.facts.ManagedFile": {
            f"path={INDEX}": managed(published),  # whatever publishes made of it
            f"path={LOCATION}": managed(written[LOCATION]),
        },
    }


def test_fresh_repository_host(description):
    lines = plan(DEPLOY, "repo1", description, fresh_facts())
    assert "chart folder /var/lib/kubi/charts: mkdir -p /var/lib/kubi/charts" in lines
    written = uploads(lines)
    index = yaml.safe_load(written[INDEX])
    assert index == {"apiVersion": "v1", "entries": {}}
    # Created only if the name is still free when it runs: `ln` never replaces a file.
    create = [line for line in lines if line.startswith("empty chart index (first deploy only): ")]
    assert create[-1].endswith(
        f"{{ ln {INDEX}.kubi-new {INDEX} 2>/dev/null || true; }} && rm -f {INDEX}.kubi-new"
    )
    location = written[LOCATION]
    assert "location /charts/ {" in location
    assert "alias /var/lib/kubi/charts/;" in location
    assert "auth_basic_user_file /etc/nginx/auth/repository-pull.htpasswd;" in location
    assert "limit_except GET {\n        deny all;" in location  # no writes through HTTP
    install = [line for line in lines if line.startswith("nginx location /charts/: sh -c")][0]
    assert "nginx -t" in install and "reload-or-restart nginx" in install


def test_existing_index_is_never_touched(description):
    assert plan(DEPLOY, "repo1", description, converged_facts(description)) == []


def test_anonymous_pull_opens_the_charts_too(description):
    description["registry"] = {"anonymous_pull": True}
    location = uploads(plan(DEPLOY, "repo1", description, fresh_facts()))[LOCATION]
    assert "auth_basic off;" in location and "auth_basic_user_file" not in location


def test_charts_path_from_config(description):
    description["charts"] = {"path": "/srv/charts/"}
    facts = fresh_facts()
    facts["files.Directory"]["path=/srv/charts"] = None
    facts["kubi.facts.ManagedFile"]["path=/srv/charts/index.yaml"] = None
    written = uploads(plan(DEPLOY, "repo1", description, facts))
    assert "alias /srv/charts/;" in written[LOCATION]
    assert "/srv/charts/index.yaml" in written


@pytest.mark.parametrize("host", ["in1", "out1", "cp1", "w1"])
def test_only_on_the_repository_host(description, host):
    assert plan(DEPLOY, host, description, {}) == []
