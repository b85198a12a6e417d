"""nginx: the raw nginx, verified on the service hosts."""

from __future__ import annotations


def test_installed_with_stream_module(node):
    assert node.package("nginx").is_installed
    assert node.package("libnginx-mod-stream").is_installed
    service = node.service("nginx")
    assert service.is_running and service.is_enabled


def test_configuration_is_valid(node):
    assert node.run("nginx -t").rc == 0


def test_layout_sites_and_streams(node):
    for folder in ("/etc/nginx/sites.conf.d", "/etc/nginx/streams.conf.d"):
        assert node.file(folder).is_directory
    full = node.check_output("nginx -T 2>/dev/null")
    assert "include /etc/nginx/sites.conf.d/*.conf;" in full
    stream = full[full.index("\nstream {") :]
    assert "include /etc/nginx/streams.conf.d/*.conf;" in stream


def test_no_default_site(node):
    assert not node.file("/etc/nginx/sites-enabled/default").exists
    # Debian's welcome site would answer on port 80 of every address.
    assert "/var/www/html" not in node.check_output("nginx -T 2>/dev/null")


def test_no_leftover_temporary_files(node):
    leftovers = node.run("find /etc/nginx -name '*.kubi-new' -o -name '*.kubi-old'").stdout
    assert leftovers.strip() == ""
