"""Chart publishing with Helm's own SDK, against a fake repository host: a chart store in a
local folder reached through `LocalRunner`, which runs the very shell scripts the SSH path
sends."""

from __future__ import annotations

import os
import time
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from kubi import charts, cli
from kubi.charts import ChartError, ChartStore, publish
from kubi.ssh import LocalRunner


def make_chart(parent: Path, name: str = "demo", version: str = "0.1.0", note: str = "") -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    helm.Chart.create(name, str(parent))
    folder = parent / name
    chart_yaml = folder / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", f"version: {version}"))
    if note:
        (folder / "templates" / "NOTES.txt").write_text(note)
    return folder


@pytest.fixture
def store(tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "index.yaml").write_text(charts.EMPTY_INDEX)
    return ChartStore(LocalRunner(), str(folder))


def index_of(store) -> dict:
    return yaml.safe_load(Path(store.path, "index.yaml").read_text())


def test_broken_chart_is_refused_with_helms_message(tmp_path, store):
    chart = make_chart(tmp_path / "src")
    template = chart / "templates" / "deployment.yaml"
    template.write_text(template.read_text().replace("{{- end }}", "", 1))
    with pytest.raises(ChartError) as refused:
        publish(chart, store)
    message = str(refused.value)
    assert "[ERROR] templates/: parse error at (demo/templates/deployment.yaml:" in message
    assert "unexpected EOF" in message
    assert "Helm's lint refused the chart" in message
    assert sorted(os.listdir(store.path)) == ["index.yaml"]  # nothing published
    assert index_of(store)["entries"] == {}


def test_missing_version_is_refused(tmp_path, store):
    chart = make_chart(tmp_path / "src")
    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", ""))
    with pytest.raises(ChartError, match=r"\[ERROR\] Chart.yaml: version is required"):
        publish(chart, store)


def test_publish_packages_and_indexes(tmp_path, store):
    result = publish(make_chart(tmp_path / "src"), store, kube_version="1.31.4")
    assert (result.name, result.version, result.outcome, result.charts) == (
        "demo", "0.1.0", "published", 1
    )  # fmt: skip
    archive = Path(store.path, "demo-0.1.0.tgz")
    assert oct(archive.stat().st_mode & 0o777) == "0o644"
    index = index_of(store)
    assert index["apiVersion"] == "v1" and "generated" in index
    (entry,) = index["entries"]["demo"]
    assert entry["urls"] == ["demo-0.1.0.tgz"]  # relative: any server name works
    assert entry["digest"] == helm.digest(str(archive)).removeprefix("sha256:")
    assert entry["apiVersion"] == "v2" and entry["appVersion"] and entry["created"]
    assert sorted(os.listdir(store.path)) == ["demo-0.1.0.tgz", "index.yaml"]  # no temp


def test_index_merge_keeps_existing_entries(tmp_path, store):
    publish(make_chart(tmp_path / "a"), store)
    first = index_of(store)["entries"]["demo"][0]
    publish(make_chart(tmp_path / "b", version="0.2.0"), store)
    publish(make_chart(tmp_path / "c", name="other", version="1.0.0"), store)
    entries = index_of(store)["entries"]
    assert sorted(e["version"] for e in entries["demo"]) == ["0.1.0", "0.2.0"]
    assert [e["version"] for e in entries["other"]] == ["1.0.0"]
    kept = next(e for e in entries["demo"] if e["version"] == "0.1.0")
    assert kept == first  # untouched, created time included


def test_same_version_other_content_is_refused_unless_forced(tmp_path, store):
    publish(make_chart(tmp_path / "a", note="first"), store)
    before = Path(store.path, "demo-0.1.0.tgz").read_bytes()
    changed = make_chart(tmp_path / "b", note="second")
    with pytest.raises(ChartError, match="already published with other content"):
        publish(changed, store)
    assert Path(store.path, "demo-0.1.0.tgz").read_bytes() == before

    result = publish(changed, store, force=True)
    assert result.outcome == "replaced"
    after = Path(store.path, "demo-0.1.0.tgz")
    assert after.read_bytes() != before
    (entry,) = index_of(store)["entries"]["demo"]
    assert entry["digest"] == helm.digest(str(after)).removeprefix("sha256:")


def test_same_content_again_changes_nothing(tmp_path, store):
    chart = make_chart(tmp_path / "src")
    publish(chart, store)
    index = Path(store.path, "index.yaml").read_bytes()
    archive = Path(store.path, "demo-0.1.0.tgz").read_bytes()
    time.sleep(1.1)
    os.utime(chart / "values.yaml")  # Helm records file times: other archive bytes
    result = publish(chart, store)
    assert result.outcome == "unchanged"
    assert Path(store.path, "index.yaml").read_bytes() == index
    assert Path(store.path, "demo-0.1.0.tgz").read_bytes() == archive


def test_packaged_chart_is_published_as_it_is(tmp_path, store):
    archive = helm.package(str(make_chart(tmp_path / "src")), destination=str(tmp_path))
    renamed = tmp_path / "upload.tgz"
    os.rename(archive, renamed)
    publish(renamed, store)
    assert Path(store.path, "demo-0.1.0.tgz").read_bytes() == renamed.read_bytes()


def test_concurrent_index_change_is_merged_again(tmp_path, store):
    publish(make_chart(tmp_path / "a", name="first"), store)
    racer = make_chart(tmp_path / "b", name="racer")
    runner = store.runner
    raced = []

    class Racing:
        where = "localhost"

        def run(self, command, stdin=b""):
            if "flock" in command and not raced:  # another publish lands in between
                raced.append(True)
                publish(racer, ChartStore(runner, store.path))
            return runner.run(command, stdin)

    logged = []
    publish(make_chart(tmp_path / "c", name="mine"), ChartStore(Racing(), store.path),
            log=logged.append)  # fmt: skip
    assert sorted(index_of(store)["entries"]) == ["first", "mine", "racer"]
    assert logged[-1].startswith("index.yaml changed during the publish")


def test_undeployed_repository_is_named(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(ChartError, match="run deploys/charts.py first"):
        publish(make_chart(tmp_path / "src"), ChartStore(LocalRunner(), str(empty)))


def test_cli_refuses_a_broken_chart_with_helms_message(tmp_path, store, monkeypatch, capsys):
    chart = make_chart(tmp_path / "src")
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\n")
    inventory = tmp_path / "inv.py"
    inventory.write_text(
        "from kubi.inventory import declare\n"
        "from tests.plans.conftest import DESCRIPTION\n"
        f"declare(__file__, **DESCRIPTION, secrets_dir={str(tmp_path / 's')!r})\n"
    )

    class Host:
        def close(self):
            pass

    monkeypatch.setattr(charts, "chart_store_for", lambda declared: (store, Host()))
    assert cli.main(["charts", "publish", str(chart), "--inventory", str(inventory)]) == 1
    err = capsys.readouterr().err
    assert "[ERROR] Chart.yaml: version is required" in err

    good = make_chart(tmp_path / "ok")
    assert cli.main(["charts", "publish", str(good), "--inventory", str(inventory)]) == 0
    out = capsys.readouterr().out
    assert "demo 0.1.0: published in https://repository.plan.kubi.internal/charts/" in out


def test_cli_reports_an_ssh_failure_in_one_line(tmp_path, monkeypatch, capsys):
    from kubi.ssh import SshError

    inventory = tmp_path / "inv.py"
    inventory.write_text(
        "from kubi.inventory import declare\n"
        "from tests.plans.conftest import DESCRIPTION\n"
        f"declare(__file__, **DESCRIPTION, secrets_dir={str(tmp_path / 's')!r})\n"
    )

    def unreachable(declared):
        raise SshError("cannot connect to repo1 (10.20.0.13:22) over SSH as root: refused")

    monkeypatch.setattr(charts, "chart_store_for", unreachable)
    chart = make_chart(tmp_path / "src")
    assert cli.main(["charts", "publish", str(chart), "--inventory", str(inventory)]) == 1
    assert capsys.readouterr().err == (
        "kubi: cannot connect to repo1 (10.20.0.13:22) over SSH as root: refused\n"
    )


def test_archive_named_like_an_option_is_stored_as_a_file(store):
    """A chart whose name starts with '-' (as an archive file may be named) must not be
    read as an option of install or mv."""
    index = charts.EMPTY_INDEX.encode()
    assert store.commit("-x-0.1.0.tgz", b"archive", index, index)
    assert Path(store.path, "-x-0.1.0.tgz").read_bytes() == b"archive"
    with pytest.raises(charts.ChartError, match="not a chart archive name"):
        store.commit("../escape.tgz", b"archive", index, index)


# --- kubi charts mirror: the pinned upstream archives, as they are ---------------------------

UPSTREAM = Path(os.environ.get("KUBI_LAB_CHARTS", "/var/cache/kubi-charts"))


def cilium_inventory(tmp_path, charts_folder) -> Path:
    inventory = tmp_path / "inv.py"
    inventory.write_text(
        "from kubi.inventory import declare\n"
        "from tests.plans.conftest import DESCRIPTION\n"
        f"declare(__file__, **DESCRIPTION, secrets_dir={str(tmp_path / 's')!r},\n"
        "        kubernetes={'pod_network': 'cilium'}, components={'ingress': False},\n"
        f"        cilium={{'charts': {str(charts_folder)!r}}})\n"
    )
    return inventory


def test_mirror_publishes_the_pinned_archives_byte_for_byte(tmp_path, store, monkeypatch, capsys):
    from kubi import upstream_charts
    from kubi.config import matrices

    name = upstream_charts.archive_name("cilium")
    if not (UPSTREAM / name).is_file():
        pytest.skip(f"no {UPSTREAM / name} (KUBI_LAB_CHARTS): see docs/lab.md")

    class Host:
        def close(self):
            pass

    monkeypatch.setattr(charts, "chart_store_for", lambda declared: (store, Host()))
    inventory = cilium_inventory(tmp_path, UPSTREAM)
    assert cli.main(["charts", "mirror", "--inventory", str(inventory)]) == 0
    assert "cilium 1.19.6: published in https://repository.plan.kubi.internal/charts/" in (
        capsys.readouterr().out
    )
    pinned = matrices.upstream_chart("cilium")
    (entry,) = index_of(store)["entries"]["cilium"]
    assert entry["digest"] == pinned.digest  # what every deployer's download checks
    assert Path(store.path, name).read_bytes() == (UPSTREAM / name).read_bytes()
    assert cli.main(["charts", "mirror", "--inventory", str(inventory)]) == 0
    assert "cilium 1.19.6: unchanged" in capsys.readouterr().out


def test_mirror_refuses_an_archive_that_is_not_the_pinned_one(tmp_path, store, monkeypatch, capsys):
    from kubi import upstream_charts

    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / upstream_charts.archive_name("cilium")).write_bytes(b"not the chart")
    monkeypatch.setattr(charts, "chart_store_for", lambda declared: pytest.fail("reached"))
    inventory = cilium_inventory(tmp_path, folder)
    # the config check already refuses the folder, naming the field (exit 2: the config)
    assert cli.main(["charts", "mirror", "--inventory", str(inventory)]) == 2
    err = capsys.readouterr().err
    assert "cilium.charts: " in err and "not the pinned" in err
    assert sorted(os.listdir(store.path)) == ["index.yaml"]


def test_mirror_refuses_an_archive_of_another_chart(tmp_path, store):
    archive = charts.package(make_chart(tmp_path / "src", name="other"), tmp_path).archive
    with pytest.raises(ChartError, match="holds the chart other, not cilium"):
        charts.mirror({"cilium": archive}, store)


def test_mirror_with_no_upstream_chart_in_use_does_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(charts, "chart_store_for", lambda declared: pytest.fail("reached"))
    inventory = tmp_path / "inv.py"
    inventory.write_text(
        "from kubi.inventory import declare\n"
        "from tests.plans.conftest import DESCRIPTION\n"
        f"declare(__file__, **DESCRIPTION, secrets_dir={str(tmp_path / 's')!r},\n"
        "        components={'cilium': False, 'ingress': False})\n"
    )
    assert cli.main(["charts", "mirror", "--inventory", str(inventory)]) == 0
    assert "nothing to mirror" in capsys.readouterr().out
