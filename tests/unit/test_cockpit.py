"""The cockpit's rendered nginx site and stream pass a real `nginx -t`."""

from __future__ import annotations

import copy

from tests.plans.conftest import (
    DESCRIPTION,
    with_monitoring,  # noqa: F401  (fixture)
)
from tests.plans.harness import plan, uploads

from .test_nginx_mechanism import Nginx, pytestmark  # noqa: F401  (same nginx requirement)


def test_cockpit_configuration_is_valid_nginx(tmp_path, with_monitoring):  # noqa: F811
    description = copy.deepcopy(DESCRIPTION)
    files = {"kubi.facts.ManagedFile": {}}
    for path in (
        "/var/www/kubi-cockpit/index.html",
        "/etc/nginx/sites.conf.d/cockpit.conf",
        "/etc/nginx/streams.conf.d/kube-api.conf",
    ):
        files["kubi.facts.ManagedFile"][f"path={path}"] = None  # fmt: skip
    written = uploads(plan("deploys/cockpit.py", "in1", description, files))
    server = Nginx(tmp_path)
    (tmp_path / "sites.conf.d" / "cockpit.conf").write_text(
        written["/etc/nginx/sites.conf.d/cockpit.conf"]
    )
    (tmp_path / "streams.conf.d" / "kube-api.conf").write_text(
        written["/etc/nginx/streams.conf.d/kube-api.conf"]
    )
    result = server.test()
    assert result.returncode == 0, result.stderr
    assert (
        '<a href="http://grafana.localhost:8080/">Grafana</a>'
        in written["/var/www/kubi-cockpit/index.html"]
    )
