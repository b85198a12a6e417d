"""The Kubernetes version table (kubi/config/kubernetes.toml): what each minor records, the
refusal of a malformed entry at load, the end-of-life notice, versions outside the table."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from kubi.config import ConfigError, matrices, validate
from kubi.config.containerd import ContainerdSettings
from kubi.config.versions import Versions, kubernetes_end_of_life

from .test_config import description

# Debian 12's containerd (the lab's), which every supported minor must run on.
DEBIAN_CONTAINERD = "1.6.20"


def entry(minor: str = "1.33", **changes: str) -> str:
    """One [minor] table as TOML; `changes` replace a field's TOML value (images_<x> for the
    images table), or add one."""
    fields = {
        "packages": f'"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"',
        "kubeadm_api": '"kubeadm.k8s.io/v1beta4"',
        "containerd": '["1.6", "2.1"]',
        "end_of_life": "2026-06-28",
        "images_patch": f'"{minor}.3"',
        "images_etcd": '"3.5.21-0"',
        "images_coredns": '"v1.12.0"',
        "images_pause": '"3.10"',
    }
    fields.update(changes)
    top = [f"{k} = {v}" for k, v in fields.items() if not k.startswith("images_")]
    images = [f"{k[7:]} = {v}" for k, v in fields.items() if k.startswith("images_")]
    return "\n".join([f'[minor."{minor}"]', *top, f'[minor."{minor}".images]', *images, ""])


def load(tmp_path, text: str) -> matrices.KubernetesMatrix:
    (tmp_path / "kubernetes.toml").write_text(text)
    return matrices.load("kubernetes", matrices.KubernetesMatrix, tmp_path)


def refusal(tmp_path, text: str) -> str:
    with pytest.raises(matrices.MatrixError) as refused:
        load(tmp_path, text)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'kubernetes.toml'}: "), message
    return message


# --- the shipped table ------------------------------------------------------------------


def test_shipped_table_loads_with_every_field():
    table = matrices.kubernetes()
    assert table.supported == ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36"]
    for minor, row in table.minor.items():
        assert row.packages == f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
        assert row.images.patch.startswith(f"{minor}.")
        expected_api = "v1beta3" if minor == "1.30" else "v1beta4"
        assert row.kubeadm_api == f"kubeadm.k8s.io/{expected_api}"
        assert isinstance(row.end_of_life, dt.date)


def test_the_labs_release_is_in_the_table_as_measured():
    """kubeadm v1.33.3, the lab's binary, deploys these (measured in the lab)."""
    images = matrices.kubernetes_minor("1.33.3").images
    assert (images.patch, images.etcd, images.coredns, images.pause) == (
        "1.33.3", "3.5.21-0", "v1.12.0", "3.10",
    )  # fmt: skip


@pytest.mark.parametrize("minor", ["1.30", "1.31", "1.32", "1.33", "1.34"])
def test_debians_containerd_runs_the_minors_up_to_1_34(minor):
    """The lab (and a plain Debian 12 host) runs Debian's containerd up to 1.34."""
    assert DEBIAN_CONTAINERD in matrices.kubernetes().minor[minor].containerd


@pytest.mark.parametrize("minor", ["1.35", "1.36"])
def test_later_minors_need_containerd_from_docker(minor):
    assert DEBIAN_CONTAINERD not in matrices.kubernetes().minor[minor].containerd
    assert ContainerdSettings().version in matrices.kubernetes().minor[minor].containerd


def test_default_version_is_the_newest_minor_at_its_reference_patch():
    """Production defaults to a maintained minor, at the patch whose images the table has."""
    newest = matrices.kubernetes().supported[-1]
    assert Versions().kubernetes == matrices.kubernetes().minor[newest].images.patch
    assert matrices.kubernetes().minor[newest].end_of_life > dt.date(2026, 11, 27)


# --- the helper for deploy code -----------------------------------------------------------


def test_a_version_gives_its_minors_entry():
    assert matrices.kubernetes_minor("1.31.9") is matrices.kubernetes().minor["1.31"]
    assert matrices.kubernetes_minor("1.34.1").images.pause == "3.10.1"


@pytest.mark.parametrize("version", ["1.29.15", "1.37.0", "1.3.0", "2.33.0"])
def test_a_version_outside_the_table_is_refused_with_the_supported_list(version):
    with pytest.raises(matrices.UnsupportedKubernetes) as refused:
        matrices.kubernetes_minor(version)
    minor = ".".join(version.split(".")[:2])
    assert str(refused.value) == (
        f"minor {minor} is not supported by kubi (kubi/config/kubernetes.toml); "
        "supported: 1.30, 1.31, 1.32, 1.33, 1.34, 1.35, 1.36"
    )


def test_a_platform_outside_the_table_is_refused(description_for):
    with pytest.raises(ConfigError) as refused:
        validate(description_for("1.37.2"))
    assert refused.value.problems == [
        "field 'versions.kubernetes': minor 1.37 is not supported by kubi "
        "(kubi/config/kubernetes.toml); supported: 1.30, 1.31, 1.32, 1.33, 1.34, 1.35, 1.36 "
        "(got '1.37.2')"
    ]


# --- refusal at load -----------------------------------------------------------------------


def test_a_well_formed_table_loads(tmp_path):
    table = load(tmp_path, entry("1.33") + entry("1.30", kubeadm_api='"kubeadm.k8s.io/v1beta3"'))
    assert table.supported == ["1.30", "1.33"]
    assert table.minor["1.33"].end_of_life == dt.date(2026, 6, 28)
    assert table.minor["1.33"].containerd.low == "1.6"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"images_etcd": '"3.5.21"'}, "minor.1.33.images.etcd: must be an etcd image tag like"),
        ({"images_etcd": '"3.5.21-0 "'}, "minor.1.33.images.etcd: must be an etcd image tag"),
        ({"images_coredns": '"1.12.0"'}, "minor.1.33.images.coredns: must be a CoreDNS tag like"),
        ({"images_pause": '"3.10-0"'}, "minor.1.33.images.pause: must be a pause tag like '3.10'"),
        ({"images_pause": "3.10"}, "minor.1.33.images.pause: Input should be a valid string"),
        ({"images_patch": '"1.33"'}, "minor.1.33.images.patch: must be a version like"),
        ({"images_patch": '"1.32.3"'}, "minor 1.33: images.patch 1.32.3 is not a 1.33 release"),
        ({"images_registry": '"x"'}, "minor.1.33.images.registry: Extra inputs are not permitted"),
        (
            {"kubeadm_api": '"kubeadm.k8s.io/v1beta5"'},
            "minor.1.33.kubeadm_api: Input should be 'kubeadm.k8s.io/v1beta3' or "
            "'kubeadm.k8s.io/v1beta4'",
        ),
        ({"kubeadm_api": '"v1beta4"'}, "minor.1.33.kubeadm_api: Input should be"),
        (
            {"containerd": '["2.1", "1.6"]'},
            "minor.1.33.containerd: lowest 2.1 is above highest 1.6",
        ),
        ({"containerd": '["1.6"]'}, "minor.1.33.containerd: must be [lowest, highest]"),
        (
            {"containerd": '["1.6.20", "2.1"]'},
            "minor.1.33.containerd.low: must be a release series",
        ),
        ({"end_of_life": '"2026-13-01"'}, "minor.1.33.end_of_life: must be a date like 2026-06-28"),
        ({"end_of_life": "1782604800"}, "minor.1.33.end_of_life: must be a date like 2026-06-28"),
        ({"end_of_life": "2026-06-28T00:00:00"}, "minor.1.33.end_of_life: must be a date like"),
        (
            {"packages": '"https://pkgs.k8s.io/core:/stable:/v1.32/deb/"'},
            "minor 1.33: its packages",
        ),
    ],
    ids=lambda value: str(value)[:40],
)
def test_a_malformed_entry_is_refused_naming_the_file_entry_and_problem(tmp_path, changes, problem):
    message = refusal(tmp_path, entry("1.33", **changes))
    assert problem in message


def test_the_released_kubeadm_api_is_not_written_before_its_minor(tmp_path):
    message = refusal(tmp_path, entry("1.30", kubeadm_api='"kubeadm.k8s.io/v1beta4"'))
    assert message == (
        f"{tmp_path / 'kubernetes.toml'}: "
        "minor 1.30: kubeadm_api kubeadm.k8s.io/v1beta4 is released from 1.31 on"
    )


def test_a_missing_field_is_named(tmp_path):
    text = entry("1.33").replace("end_of_life = 2026-06-28\n", "")
    assert "minor.1.33.end_of_life: Field required" in refusal(tmp_path, text)


def test_a_string_date_is_read_as_a_date(tmp_path):
    table = load(tmp_path, entry("1.33", end_of_life='"2026-06-28"'))
    assert table.minor["1.33"].end_of_life == dt.date(2026, 6, 28)


# --- end of life: a notice, never an error --------------------------------------------------


def test_end_of_life_is_reported_from_its_date_on():
    eol = matrices.kubernetes_minor("1.33.3").end_of_life
    assert kubernetes_end_of_life("1.33.3", today=eol - dt.timedelta(days=1)) is None
    notice = kubernetes_end_of_life("1.33.3", today=eol)
    assert notice == (
        "versions.kubernetes 1.33.3: Kubernetes 1.33 reached its upstream end of life on "
        f"{eol.isoformat()} and gets no more security fixes; move to 1.36"
    )


def test_end_of_life_names_no_successor_when_every_minor_is_gone():
    last = max(row.end_of_life for row in matrices.kubernetes().minor.values())
    notice = kubernetes_end_of_life("1.30.0", today=last)
    assert notice is not None
    assert notice.startswith("versions.kubernetes 1.30.0: Kubernetes 1.30 reached its upstream ")
    assert notice.endswith(
        "no minor in kubi/config/kubernetes.toml is maintained upstream any more"
    )


@pytest.fixture
def description_for():
    def platform(version: str) -> dict:
        # Debian 12's containerd up to 1.34, the default containerd.io from 1.35 on
        old = matrices.series_key(version) <= (1, 34)
        return description(
            versions={"kubernetes": version}, containerd={"source": "debian"} if old else {}
        )

    return platform


def eol_notices(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if "end of life" in r.getMessage()]


def test_loading_a_platform_past_end_of_life_warns_and_loads(description_for, caplog, monkeypatch):
    monkeypatch.setattr("kubi.config.versions.current_date", lambda: dt.date(2025, 8, 1))
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        platform = validate(description_for("1.30.14"), source="inventories/unit.py")
    assert platform.versions.kubernetes == "1.30.14"
    assert eol_notices(caplog) == [
        (
            logging.WARNING,
            "inventories/unit.py: versions.kubernetes 1.30.14: Kubernetes 1.30 reached its "
            "upstream end of life on 2025-07-15 and gets no more security fixes; move to 1.36",
        )
    ]


def test_loading_a_maintained_minor_says_nothing(description_for, caplog, monkeypatch):
    monkeypatch.setattr("kubi.config.versions.current_date", lambda: dt.date(2026, 1, 1))
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        validate(description_for("1.33.3"))
    assert eol_notices(caplog) == []


def test_the_default_platform_loads_without_a_notice_today(description_for, caplog):
    """The default minor is maintained upstream on the real date; the lab's (1.33) is not."""
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        validate(description_for(Versions().kubernetes))
        validate(description_for("1.33.3"))
    assert [message for _, message in eol_notices(caplog)] == [
        "platform: versions.kubernetes 1.33.3: Kubernetes 1.33 reached its upstream end of "
        "life on 2026-06-28 and gets no more security fixes; move to 1.36"
    ]


def test_a_refused_platform_gets_no_end_of_life_notice(description_for, caplog):
    desc = description_for("1.30.14")
    del desc["groups"]["output"]
    with caplog.at_level(logging.WARNING, logger="pyinfra"), pytest.raises(ConfigError):
        validate(desc)
    assert eol_notices(caplog) == []
