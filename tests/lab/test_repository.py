"""The delivery server for real: images pushed and pulled with a real OCI client (Debian's
skopeo) between lab hosts, charts published with `kubi charts publish` over SSH and
downloaded from another host, and a second converge that changes nothing.

Runs after tests/lab/test_converge.py (seed and nginx converged); deploys registry and
charts itself first. Credentials never appear on a command line: auth files and headers
travel on ssh's stdin.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from kubi import registry
from kubi.inventory import load
from kubi.secrets import for_platform
from tests import oci

from .conftest import BIN, ROOT, changed_ops, failed_ops, pyinfra

pytestmark = pytest.mark.lab

DEPLOYS = ("deploys/registry.py", "deploys/charts.py")
IMAGE = "kubi/hello:1"
WORK = "/root/kubi-repository-test"  # on the lab hosts


def ssh(address: str, command: str, stdin: bytes = b"", timeout: float = 600):
    from kubi import lab

    lab.check_route(address)
    return subprocess.run(
        lab.ssh_argv(address, command), input=stdin, capture_output=True, timeout=timeout
    )


def ok(address: str, command: str, stdin: bytes = b"") -> str:
    done = ssh(address, command, stdin)
    assert done.returncode == 0, (command, done.stderr.decode()[-3000:])
    return done.stdout.decode()


def tar_of(folder: Path) -> bytes:
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        tar.add(folder, arcname=".")
    return stream.getvalue()


@pytest.fixture(scope="module")
def deployed(lab_state):
    started = time.monotonic()
    result = pyinfra("--json", "-y", *DEPLOYS)
    assert result.returncode == 0, result.stderr[-4000:]
    assert failed_ops(result) == {}
    print(f"\nregistry+charts converge: {time.monotonic() - started:.1f} s")
    return result


@pytest.fixture(scope="module")
def platform(deployed):
    return load(ROOT / "inventories" / "lab.py").config


@pytest.fixture(scope="module")
def hosts(lab_state):
    by_role = {h.role: h.address for h in lab_state.hosts}
    return {
        "pusher": by_role["input"],  # where operators work
        "puller": by_role["control_plane"],  # another host: a cluster node
        "repository": by_role["repository"],
    }


@pytest.fixture(scope="module")
def clients(deployed, platform, hosts):
    """skopeo (from the lab's apt proxy) and auth files on the pushing and pulling hosts."""
    secrets = for_platform(platform)
    for role, kinds in (("pusher", ("push", "pull")), ("puller", ("pull",))):
        address = hosts[role]
        ok(address, "DEBIAN_FRONTEND=noninteractive apt-get install -q -y skopeo >/dev/null")
        ok(address, f"rm -rf {WORK} && mkdir -m 700 {WORK}")
        for kind in kinds:
            basic = registry.account(secrets, kind).basic()
            auth = {"auths": {registry.endpoint(platform): {"auth": basic}}}
            ok(address, f"umask 077 && cat > {WORK}/{kind}.json", json.dumps(auth).encode())
    return secrets


@pytest.fixture(scope="module")
def image(clients, hosts, tmp_path_factory):
    img = oci.image(f"hello from kubi, {time.time()}\n")
    layout = oci.write_layout(img, tmp_path_factory.mktemp("oci"), "1")
    ok(hosts["pusher"], f"mkdir {WORK}/layout && tar -x -C {WORK}/layout", tar_of(layout))
    return img


def skopeo(address: str, arguments: str):
    return ssh(address, f"cd {WORK} && skopeo {arguments}")


@pytest.fixture(scope="module")
def pushed(platform, hosts, image):
    started = time.monotonic()
    done = skopeo(
        hosts["pusher"],
        f"copy --dest-authfile push.json oci:layout:1 docker://{registry.endpoint(platform)}/{IMAGE}",
    )
    assert done.returncode == 0, done.stderr.decode()
    print(f"\nskopeo push: {time.monotonic() - started:.1f} s")
    return image


def test_push_with_the_push_account(pushed):
    assert pushed.manifest_digest.startswith("sha256:")


def test_anonymous_and_read_only_pushes_are_refused(platform, hosts, image):
    target = f"docker://{registry.endpoint(platform)}/kubi/refused:1"
    for credentials in ("--dest-no-creds", "--dest-authfile pull.json"):
        done = skopeo(hosts["pusher"], f"copy {credentials} oci:layout:1 {target}")
        assert done.returncode != 0, credentials
        error = done.stderr.decode().lower()
        assert "authentication required" in error or "unauthorized" in error, error


def test_pull_from_another_host_with_the_pull_account(platform, hosts, pushed):
    image = pushed
    source = f"docker://{registry.endpoint(platform)}/{IMAGE}"
    raw = skopeo(hosts["puller"], f"inspect --raw --authfile pull.json {source}")
    assert raw.returncode == 0, raw.stderr.decode()
    assert raw.stdout == image.manifest  # the very manifest that was pushed
    ok(hosts["puller"], f"rm -rf {WORK}/pulled")
    done = skopeo(hosts["puller"], f"copy --src-authfile pull.json {source} oci:pulled:1")
    assert done.returncode == 0, done.stderr.decode()
    index = json.loads(ok(hosts["puller"], f"cat {WORK}/pulled/index.json"))
    assert index["manifests"][0]["digest"] == image.manifest_digest
    layer = oci.digest(image.layer)
    pulled = ok(hosts["puller"], f"sha256sum {WORK}/pulled/blobs/sha256/{layer[7:]}").split()[0]
    assert f"sha256:{pulled}" == layer
    # Without an account, reads are refused (registry.anonymous_pull is off in the lab).
    anonymous = skopeo(hosts["puller"], f"inspect --raw --no-creds {source}")
    assert anonymous.returncode != 0


# --- charts ----------------------------------------------------------------------------------

VERSION = f"0.1.{int(time.time())}"  # a new version on every run: a real publish each time


def make_chart(parent: Path, name: str, note: str = "") -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    helm.Chart.create(name, str(parent))
    chart_yaml = parent / name / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", f"version: {VERSION}"))
    if note:
        (parent / name / "templates" / "NOTES.txt").write_text(note)
    return parent / name


def publish(chart: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "kubi"), "charts", "publish", str(chart), "--inventory", "inventories/lab.py",
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def fetch(platform, address: str, path: str, secrets) -> bytes:
    """GET a charts URL from a lab host with the pull account (header on curl's stdin)."""
    header = f"Authorization: Basic {registry.account(secrets, 'pull').basic()}\n".encode()
    url = f"{registry.charts_url(platform)}{path}"
    done = ssh(address, f"curl -fsS --max-time 20 -H @- {url}", header)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.fixture(scope="module")
def first_chart(deployed, tmp_path_factory):
    chart = make_chart(tmp_path_factory.mktemp("charts"), "kubi-lab-demo")
    started = time.monotonic()
    done = publish(chart)
    assert done.returncode == 0, done.stderr
    print(f"\ncharts publish: {time.monotonic() - started:.1f} s")
    return chart, done


def test_publish_then_download_from_another_host(platform, hosts, clients, first_chart):
    _, done = first_chart
    assert f"kubi-lab-demo {VERSION}: published in {registry.charts_url(platform)}" in done.stdout
    index = yaml.safe_load(fetch(platform, hosts["puller"], "index.yaml", clients))
    entry = next(e for e in index["entries"]["kubi-lab-demo"] if e["version"] == VERSION)
    archive = fetch(platform, hosts["puller"], entry["urls"][0], clients)
    assert hashlib.sha256(archive).hexdigest() == entry["digest"]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert "kubi-lab-demo/Chart.yaml" in tar.getnames()


def test_second_chart_keeps_the_first(platform, hosts, clients, first_chart, tmp_path):
    done = publish(make_chart(tmp_path, "kubi-lab-other"))
    assert done.returncode == 0, done.stderr
    entries = yaml.safe_load(fetch(platform, hosts["puller"], "index.yaml", clients))["entries"]
    assert VERSION in [e["version"] for e in entries["kubi-lab-demo"]]
    assert VERSION in [e["version"] for e in entries["kubi-lab-other"]]


def test_republish_same_content_is_a_no_op_other_content_refused(first_chart, tmp_path):
    chart, _ = first_chart
    again = publish(chart)
    assert again.returncode == 0, again.stderr
    assert f"kubi-lab-demo {VERSION}: unchanged" in again.stdout
    refused = publish(make_chart(tmp_path, "kubi-lab-demo", note="other content"))
    assert refused.returncode == 1
    assert "already published with other content" in refused.stderr


def test_broken_chart_refused_with_helms_message(deployed, tmp_path):
    chart = make_chart(tmp_path, "kubi-lab-broken")
    template = chart / "templates" / "deployment.yaml"
    template.write_text(template.read_text().replace("{{- end }}", "", 1))
    done = publish(chart)
    assert done.returncode == 1
    assert "[ERROR] templates/: parse error at (kubi-lab-broken/templates/deployment.yaml:" in (
        done.stderr
    )
    assert "Helm's lint refused the chart" in done.stderr


def test_second_run_reports_no_changes(platform, hosts, clients, first_chart):
    started = time.monotonic()
    again = pyinfra("--json", "-y", *DEPLOYS)
    assert again.returncode == 0, again.stderr[-4000:]
    assert changed_ops(again) == {}
    assert failed_ops(again) == {}
    print(f"\nregistry+charts second run: {time.monotonic() - started:.1f} s")
    # The deploy never resets the published index.
    entries = yaml.safe_load(fetch(platform, hosts["puller"], "index.yaml", clients))["entries"]
    assert "kubi-lab-demo" in entries


def test_pushed_image_survives_the_rerun(platform, hosts, pushed):
    image = pushed
    source = f"docker://{registry.endpoint(platform)}/{IMAGE}"
    raw = skopeo(hosts["puller"], f"inspect --raw --authfile pull.json {source}")
    assert raw.returncode == 0 and raw.stdout == image.manifest


def test_cleanup(hosts):
    for role in ("pusher", "puller"):
        ok(hosts[role], f"rm -rf {WORK}")
