"""kubi/helm.py with Helm's own Go SDK against a real kube-apiserver and etcd (the
`apiserver` fixture): charts the tests build themselves as .tgz, and a chart repository
(index.yaml and archives) served by http.server on 127.0.0.1. No controller or kubelet runs,
so the charts hold ConfigMaps only and nothing waits for workloads.

Each test installs into a namespace of its own, named after it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import re
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import helm_python as sdk
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubi import helm
from kubi.helm import HelmError, Release, RepoChart

SETTINGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  greeting: {{ .Values.greeting | quote }}
"""
CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.demo.kubi.test
"""


def chart_archive(
    folder: Path, version: str = "0.1.0", templates: dict[str, str] | None = None
) -> Path:
    """folder/demo-<version>.tgz, laid out as Helm packs a chart (demo/Chart.yaml, ...);
    `templates` (path under demo/ -> text) replaces the settings ConfigMap's template."""
    files = {
        "Chart.yaml": f"apiVersion: v2\nname: demo\nversion: {version}\nappVersion: '1.0'\n",
        "values.yaml": "greeting: hello\n",
        "templates/_helpers.tpl": '{{- define "demo.name" }}demo{{ end }}\n',
        "templates/NOTES.txt": "{{ .Release.Name }} says {{ .Values.greeting }}\n",
        **(templates if templates is not None else {"templates/settings.yaml": SETTINGS}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"demo-{version}.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"demo/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def core(apiserver) -> client.CoreV1Api:
    return client.CoreV1Api(apiserver.api_client())


@pytest.fixture
def kubeconfig(apiserver) -> Path:
    return apiserver.kubeconfig


@pytest.fixture
def ns(request, core) -> str:
    """This test's own namespace, created."""
    name = ("t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()))[:50].strip("-")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def settings(core: client.CoreV1Api, ns: str, release: str = "web") -> dict[str, str] | None:
    """The data of the release's settings ConfigMap as the server has it, or None."""
    try:
        return core.read_namespaced_config_map(f"{release}-settings", ns).data
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def allowed(authorization: client.AuthorizationV1Api, ns: str, timeout: float = 10) -> None:
    """Wait, bounded, until the token may patch ConfigMaps in `ns` (RBAC follows a Role's
    change a moment later)."""
    review = {"spec": {"resourceAttributes": {"namespace": ns, "verb": "patch",
                                              "resource": "configmaps"}}}  # fmt: skip
    deadline = time.monotonic() + timeout
    while not authorization.create_self_subject_access_review(review).status.allowed:
        assert time.monotonic() < deadline, f"patching ConfigMaps in {ns} not allowed yet"
        time.sleep(0.1)


class _Files(http.server.SimpleHTTPRequestHandler):
    """A folder's files, quietly; with `authorization` set, only to requests carrying it."""

    authorization: str | None = None

    def do_GET(self):
        if self.authorization and self.headers.get("Authorization") != self.authorization:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format, *args):
        pass


class ChartRepository:
    """A chart repository as Helm reads one: index.yaml and the archives it lists, served
    over HTTP on 127.0.0.1 under /charts, as the platform's repository is; `account`
    (user, password) makes it ask for basic auth, as the platform's pull account does."""

    def __init__(self, root: Path, account: tuple[str, str] | None = None):
        self.folder = root / "charts"
        self.folder.mkdir(parents=True)
        self.entries: list[dict] = []
        basic = (
            "Basic " + base64.b64encode(":".join(account).encode()).decode() if account else None
        )
        files = type("Files", (_Files,), {"authorization": basic})
        handler = functools.partial(files, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/charts"

    def publish(self, archive: Path) -> str:
        """Serve `archive` and list it in index.yaml; its sha256."""
        (self.folder / archive.name).write_bytes(archive.read_bytes())
        version = archive.name.removeprefix("demo-").removesuffix(".tgz")
        self.entries.append({
            "apiVersion": "v2", "name": "demo", "version": version, "appVersion": "1.0",
            "urls": [archive.name], "digest": sha256(archive),
        })  # fmt: skip
        index = {"apiVersion": "v1", "entries": {"demo": self.entries}}
        (self.folder / "index.yaml").write_text(yaml.safe_dump(index))
        return sha256(archive)


@contextmanager
def serving(repository: ChartRepository) -> Iterator[ChartRepository]:
    thread = threading.Thread(target=repository.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield repository
    finally:
        repository.server.shutdown()
        repository.server.server_close()
        thread.join()


@pytest.fixture
def repository(tmp_path):
    with serving(ChartRepository(tmp_path / "served")) as repo:
        yield repo


# --- template ------------------------------------------------------------------------------


def test_template_renders_the_objects(tmp_path):
    archive = chart_archive(tmp_path, templates={
        "crds/widgets.yaml": CRD,
        "templates/settings.yaml": SETTINGS,
        "templates/account.yaml": "# two objects\n---\napiVersion: v1\nkind: ServiceAccount\n"
        "metadata:\n  name: {{ .Release.Name }}\n  namespace: {{ .Release.Namespace }}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n"
        "  ports: [{port: 80}]\n",
    })  # fmt: skip

    objects = helm.template(archive, {"greeting": "hi"}, "web", "apps")

    assert objects == [
        yaml.safe_load(CRD),
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "web", "namespace": "apps"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-settings"},
         "data": {"greeting": "hi"}},
    ]  # fmt: skip
    defaults = helm.template(archive, None, "web", "apps")
    assert defaults[-1]["data"] == {"greeting": "hello"}  # the chart's values.yaml


def test_template_of_a_broken_chart_names_the_release(tmp_path):
    unknown_function = {"templates/settings.yaml": "{{ .Values.greeting | shout }}\n"}
    not_yaml = {"templates/settings.yaml": "kind: ConfigMap\n  metadata: [\n"}

    with pytest.raises(HelmError) as refused:
        helm.template(chart_archive(tmp_path / "a", templates=unknown_function), {}, "web", "apps")
    assert str(refused.value) == (
        "Helm release apps/web: render failed: parse error at (demo/templates/settings.yaml:1):"
        ' function "shout" not defined'
    )
    with pytest.raises(HelmError) as refused:
        helm.template(chart_archive(tmp_path / "b", templates=not_yaml), {}, "web", "apps")
    assert str(refused.value) == (
        "Helm release apps/web: demo/templates/settings.yaml renders invalid YAML: mapping "
        "values are not allowed here at line 2"
    )
    with pytest.raises(HelmError, match=r"^Helm release apps/web: chart .*missing.tgz does not"):
        helm.template(tmp_path / "missing.tgz", {}, "web", "apps")
    with pytest.raises(HelmError, match="^Helm release apps/Web: checking the release name "):
        helm.template(chart_archive(tmp_path / "c"), {}, "Web", "apps")


def test_helms_reason_is_one_line_without_go_stack_frames(tmp_path):
    schema = '{"type": "object", "properties": {"greeting": {"type": "string"}}}'
    typed = chart_archive(tmp_path, templates={"values.schema.json": schema})

    with pytest.raises(HelmError) as refused:
        helm.template(typed, {"greeting": 42}, "web", "apps")

    assert str(refused.value) == (
        "Helm release apps/web: render failed: values don't meet the specifications of the "
        "schema(s) in the following chart(s): demo: - at '/greeting': got number, want string"
    )
    # a panic the SDK recovered, as it reports one (none can be provoked on purpose)
    panic = sdk.HelmPanicError(
        "panic: runtime error: invalid memory address\n\ngoroutine 7 [running]:\n"
        "helm.sh/helm/v4/pkg/action.(*Install).Run(...)\n\t/go/pkg/action/install.go:311 +0x1d"
    )
    assert helm._cause(panic) == "panic: runtime error: invalid memory address"


# --- releases ------------------------------------------------------------------------------


def test_install_makes_revision_1_and_its_objects(kubeconfig, core, ns, tmp_path):
    outcome = helm.install_or_upgrade(kubeconfig, chart_archive(tmp_path), "web", ns,
                                      {"greeting": "hi"})  # fmt: skip

    assert outcome.action == "installed" and outcome.changed
    assert outcome.release == Release("web", ns, 1, "deployed", "demo-0.1.0", "1.0")
    assert str(outcome) == f"Helm release {ns}/web: installed, revision 1 (demo-0.1.0)"
    assert settings(core, ns) == {"greeting": "hi"}
    assert helm.status(kubeconfig, "web", ns) == outcome.release
    assert helm.history(kubeconfig, "web", ns) == [outcome.release]
    assert helm.releases(kubeconfig, ns) == [outcome.release]
    assert helm.status(kubeconfig, "other", ns) is None
    assert helm.history(kubeconfig, "other", ns) == []


def test_second_identical_run_changes_nothing(kubeconfig, core, ns, tmp_path):
    archive = chart_archive(tmp_path)
    first = helm.install_or_upgrade(kubeconfig, archive, "web", ns, {"greeting": "hi"})
    version = core.read_namespaced_config_map("web-settings", ns).metadata.resource_version

    second = helm.install_or_upgrade(kubeconfig, archive, "web", ns, {"greeting": "hi"})

    assert second.action == "unchanged" and not second.changed
    assert second.release == first.release  # revision 1
    assert helm.history(kubeconfig, "web", ns) == [first.release]
    assert core.read_namespaced_config_map("web-settings", ns).metadata.resource_version == (
        version
    )


def test_values_or_chart_version_alone_are_a_change(kubeconfig, ns, tmp_path):
    """Each is part of the release even when the manifest stays the same."""
    helm.install_or_upgrade(kubeconfig, chart_archive(tmp_path), "web", ns, {"greeting": "hi"})
    unused = {"greeting": "hi", "owner": "ops"}  # no template reads it

    noted = helm.install_or_upgrade(kubeconfig, chart_archive(tmp_path), "web", ns, unused)
    same_templates = helm.install_or_upgrade(
        kubeconfig, chart_archive(tmp_path, "0.1.1"), "web", ns, unused
    )

    assert (noted.action, noted.release.revision) == ("upgraded", 2)
    assert (same_templates.action, same_templates.release.revision) == ("upgraded", 3)
    assert same_templates.release.chart == "demo-0.1.1"


def test_changed_value_upgrades_and_rollback_restores(kubeconfig, core, ns, tmp_path):
    archive = chart_archive(tmp_path)
    helm.install_or_upgrade(kubeconfig, archive, "web", ns, {"greeting": "hi"})

    upgraded = helm.install_or_upgrade(kubeconfig, archive, "web", ns, {"greeting": "hey"})

    assert upgraded.action == "upgraded"
    assert (upgraded.release.revision, upgraded.release.status) == (2, "deployed")
    assert settings(core, ns) == {"greeting": "hey"}

    rolled_back = helm.rollback(kubeconfig, "web", ns)

    assert rolled_back == Release("web", ns, 3, "deployed", "demo-0.1.0", "1.0")
    assert settings(core, ns) == {"greeting": "hi"}
    assert [(r.revision, r.status) for r in helm.history(kubeconfig, "web", ns)] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]
    # what the rollback restored is what a run with the old values wants: nothing to do
    again = helm.install_or_upgrade(kubeconfig, archive, "web", ns, {"greeting": "hi"})
    assert again.action == "unchanged" and again.release.revision == 3


def test_new_chart_version_upgrades_and_rollback_to_a_given_revision(
    kubeconfig, core, ns, tmp_path
):
    helm.install_or_upgrade(kubeconfig, chart_archive(tmp_path), "web", ns)
    changed = SETTINGS + "  farewell: bye\n"
    newer = chart_archive(tmp_path, "0.2.0", {"templates/settings.yaml": changed})

    upgraded = helm.install_or_upgrade(kubeconfig, newer, "web", ns)

    assert (upgraded.action, upgraded.release.chart) == ("upgraded", "demo-0.2.0")
    assert settings(core, ns) == {"greeting": "hello", "farewell": "bye"}
    rolled_back = helm.rollback(kubeconfig, "web", ns, revision=1)
    assert (rolled_back.revision, rolled_back.chart) == (3, "demo-0.1.0")
    assert settings(core, ns) == {"greeting": "hello"}


def test_rollback_needs_an_earlier_revision(kubeconfig, ns, tmp_path):
    with pytest.raises(HelmError) as refused:
        helm.rollback(kubeconfig, "web", ns)
    assert str(refused.value) == (
        f"Helm release {ns}/web: not installed, so there is nothing to roll back"
    )
    helm.install_or_upgrade(kubeconfig, chart_archive(tmp_path), "web", ns)

    with pytest.raises(HelmError) as refused:
        helm.rollback(kubeconfig, "web", ns)

    assert str(refused.value) == (
        f"Helm release {ns}/web: cannot roll back to revision 0 (current: 1; earlier "
        "revisions kept: none)"
    )


def test_uninstall_removes_the_objects_and_the_release(kubeconfig, core, ns, tmp_path):
    helm.install_or_upgrade(kubeconfig, chart_archive(tmp_path), "web", ns)
    helm.install_or_upgrade(kubeconfig, chart_archive(tmp_path), "db", ns)

    removed = helm.uninstall(kubeconfig, "web", ns)

    assert removed == Release("web", ns, 1, "uninstalled", "demo-0.1.0", "1.0")
    assert settings(core, ns) is None
    assert settings(core, ns, "db") == {"greeting": "hello"}
    assert [r.name for r in helm.releases(kubeconfig, ns)] == ["db"]
    assert helm.status(kubeconfig, "web", ns) is None
    assert helm.history(kubeconfig, "web", ns) == []
    assert helm.uninstall(kubeconfig, "web", ns) is None  # twice is no error


def test_broken_chart_fails_naming_the_release_and_installs_nothing(kubeconfig, ns, tmp_path):
    broken = {"templates/settings.yaml": SETTINGS.replace("{{ .Release.Name }}", "{{ .Nope")}

    with pytest.raises(HelmError) as refused:
        helm.install_or_upgrade(kubeconfig, chart_archive(tmp_path, templates=broken), "web", ns)

    assert str(refused.value).startswith(
        f"Helm release {ns}/web: install failed: parse error at (demo/templates/settings.yaml:4)"
    )
    assert "\n" not in str(refused.value)
    assert helm.releases(kubeconfig, ns) == []


def test_failed_release_is_upgraded_by_the_next_run(apiserver, core, ns, tmp_path):
    """A deployer that may not yet write ConfigMaps (RBAC is real) leaves a failed release;
    once allowed, the very same run is not 'unchanged': it upgrades."""
    rules = [
        {"apiGroups": [""], "resources": ["secrets"],  # Helm's release storage
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
    ]  # fmt: skip
    rbac = client.RbacAuthorizationV1Api(apiserver.api_client())
    role = {"metadata": {"name": "deployer"}, "rules": rules}
    rbac.create_namespaced_role(ns, role)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "deployer"}})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "deployer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}],
    })  # fmt: skip
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    token = core.create_namespaced_service_account_token("deployer", ns, request).status.token
    deployer = tmp_path / "deployer.conf"
    deployer.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n"
        f"    server: {apiserver.host}\n    certificate-authority: {apiserver.ca}\n"
        f"users:\n- name: u\n  user:\n    token: {token}\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
    )
    archive = chart_archive(tmp_path)

    with pytest.raises(HelmError) as refused:
        helm.install_or_upgrade(deployer, archive, "web", ns)

    assert str(refused.value) == (
        f"Helm release {ns}/web: install failed: server-side apply failed for object "
        f'{ns}/web-settings /v1, Kind=ConfigMap: configmaps "web-settings" is forbidden: User '
        f'"system:serviceaccount:{ns}:deployer" cannot patch resource "configmaps" in API '
        f'group "" in the namespace "{ns}"'
    )
    failed = helm.status(deployer, "web", ns)
    assert failed is not None and (failed.revision, failed.status) == (1, "failed")
    rules[1]["verbs"] += ["create", "update", "patch", "delete"]
    rbac.replace_namespaced_role("deployer", ns, role)
    allowed(client.AuthorizationV1Api(apiserver.api_client(token)), ns)

    repaired = helm.install_or_upgrade(deployer, archive, "web", ns)

    assert (repaired.action, repaired.release.revision, repaired.release.status) == (
        "upgraded", 2, "deployed",
    )  # fmt: skip
    assert settings(core, ns) == {"greeting": "hello"}


def test_secret_values_never_reach_a_message(kubeconfig, ns, tmp_path):
    loud = {"templates/settings.yaml": '{{ fail (printf "cannot use %s" .Values.db.password) }}'}
    archive = chart_archive(tmp_path, templates=loud)
    values = {"db": {"password": "hunter2-secret"}}

    for attempt in (
        lambda: helm.template(archive, values, "web", ns),
        lambda: helm.install_or_upgrade(kubeconfig, archive, "web", ns, values),
    ):
        with pytest.raises(HelmError) as refused:
            attempt()
        assert "hunter2" not in str(refused.value)
        assert str(refused.value).endswith(
            "failed: execution error at (demo/templates/settings.yaml:1:3): cannot use ***"
        )


def test_cluster_out_of_reach_is_a_helm_error(tmp_path):
    archive = chart_archive(tmp_path)
    with pytest.raises(HelmError) as refused:
        helm.install_or_upgrade(tmp_path / "nothing.conf", archive, "web", "apps")
    assert str(refused.value) == (
        f"Helm release apps/web: kubeconfig {tmp_path / 'nothing.conf'} does not exist"
    )
    nowhere = tmp_path / "nowhere.conf"
    nowhere.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n"
        "    server: https://127.0.0.1:1\nusers:\n- name: u\n  user:\n    token: t0ken\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
    )

    with pytest.raises(HelmError) as refused:
        helm.install_or_upgrade(nowhere, archive, "web", "apps")

    assert str(refused.value).startswith("Helm release apps/web: status failed: ")
    assert "127.0.0.1:1" in str(refused.value) and "connection refused" in str(refused.value)


# --- charts from a repository ---------------------------------------------------------------


def test_install_from_a_repository_takes_the_pinned_version(
    kubeconfig, core, ns, tmp_path, repository
):
    pinned = repository.publish(chart_archive(tmp_path))
    newer = SETTINGS + "  farewell: bye\n"
    newest = repository.publish(chart_archive(tmp_path, "0.2.0", {"templates/s.yaml": newer}))
    chart = RepoChart(repository.url, "demo", "0.1.0", pinned)

    installed = helm.install_or_upgrade(kubeconfig, chart, "web", ns)

    assert installed.release == Release("web", ns, 1, "deployed", "demo-0.1.0", "1.0")
    assert settings(core, ns) == {"greeting": "hello"}
    assert helm.install_or_upgrade(kubeconfig, chart, "web", ns).action == "unchanged"
    upgraded = helm.install_or_upgrade(
        kubeconfig, RepoChart(repository.url, "demo", "0.2.0", f"sha256:{newest}"), "web", ns
    )
    assert (upgraded.action, upgraded.release.chart) == ("upgraded", "demo-0.2.0")


def test_digest_mismatch_is_refused_before_anything_is_installed(
    kubeconfig, core, ns, tmp_path, repository
):
    published = repository.publish(chart_archive(tmp_path))
    expected = hashlib.sha256(b"another archive").hexdigest()

    with pytest.raises(HelmError) as refused:
        helm.install_or_upgrade(
            kubeconfig, RepoChart(repository.url, "demo", "0.1.0", expected), "web", ns
        )

    assert str(refused.value) == (
        f"Helm release {ns}/web: chart demo 0.1.0 from {repository.url}: sha256 mismatch: "
        f"expected {expected}, found {published}; refused (re-published or tampered with?): "
        "check the repository, or pin the new digest"
    )
    assert helm.releases(kubeconfig, ns) == []
    assert settings(core, ns) is None


def test_fetch_keeps_a_checked_copy(tmp_path, repository):
    archive = chart_archive(tmp_path / "built")
    digest = repository.publish(archive)
    copies = tmp_path / "copies"
    copies.mkdir()

    fetched = helm.fetch(RepoChart(repository.url, "demo", "0.1.0", digest), copies)

    assert fetched == copies / "demo-0.1.0.tgz"
    assert fetched.read_bytes() == archive.read_bytes()
    assert helm.template(fetched, {}, "web", "apps")[0]["data"] == {"greeting": "hello"}
    with pytest.raises(HelmError) as refused:
        helm.fetch(RepoChart(repository.url, "demo", "9.9.9", digest), copies)
    assert str(refused.value) == (
        f'chart demo 9.9.9 from {repository.url}: download failed: chart "demo" version '
        f'"9.9.9" not found in {repository.url} repository'
    )
    with pytest.raises(HelmError, match=r"the version must be exact \(like 1\.2\.3\)"):
        helm.fetch(RepoChart(repository.url, "demo", "^0.1", digest), copies)


def test_repository_credentials_never_reach_a_message(tmp_path):
    chart = RepoChart("http://kubi:hunter2@127.0.0.1:1/charts", "demo", "0.1.0", "0" * 64)

    with pytest.raises(HelmError) as refused:
        helm.fetch(chart, tmp_path)

    assert "hunter2" not in str(refused.value)
    assert str(refused.value).startswith(
        "chart demo 0.1.0 from http://***@127.0.0.1:1/charts: download failed: looks like "
        '"http://***@127.0.0.1:1/charts" is not a valid chart repository or cannot be reached'
    )


def test_repository_with_a_pull_account(kubeconfig, core, ns, tmp_path):
    account = ("pull", "s3cret-pw")
    with serving(ChartRepository(tmp_path / "served", account)) as repo:
        anonymous = RepoChart(repo.url, "demo", "0.1.0", repo.publish(chart_archive(tmp_path)))
        wrong = replace(anonymous, username="pull", password="wrong-pw")
        for refused_chart in (anonymous, wrong):
            with pytest.raises(HelmError) as refused:
                helm.install_or_upgrade(kubeconfig, refused_chart, "web", ns)
            assert str(refused.value).startswith(
                f"Helm release {ns}/web: chart demo 0.1.0 from {repo.url}: download failed: "
            )
            assert "401 Unauthorized" in str(refused.value)
            assert "wrong-pw" not in str(refused.value)
        assert helm.releases(kubeconfig, ns) == []

        chart = replace(anonymous, username="pull", password="s3cret-pw")
        installed = helm.install_or_upgrade(kubeconfig, chart, "web", ns)

    assert installed.action == "installed" and settings(core, ns) == {"greeting": "hello"}
    assert "s3cret" not in repr(chart)
