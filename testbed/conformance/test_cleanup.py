"""What cleanup leaves, said and counted: a Retain volume and its disk, a borrowed namespace's label under --keep.

Runs on the permissive profile. Cleanup's other paths (dropped connections, a refused label restore, a create that
lands after the delete) are unit-tested in tests/probes/test_cleanup.py with a fake API.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from testbed.conformance.harness import (
    applied,
    fresh_namespace,
    kubectl,
    labelled_objects,
    pod_manifest,
    run_suite,
    wait_until_clean,
    wait_until_enforced,
)

RETAIN_CLASS = "dindcheck-testbed-retain"
PSA_LABEL = "pod-security.kubernetes.io/enforce"
TESTBED_ROOT = Path("/var/lib/dindcheck-testbed")


def retain_class(env: dict[str, str]) -> str:
    """The testbed's cache class as a Retain class: its volumes (and their directories) outlive their claims."""
    cache = json.loads(kubectl(env, "get", "storageclass", env["TESTBED_CACHE_STORAGE_CLASS"], "-o", "json"))
    document = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": RETAIN_CLASS, "labels": {"app.kubernetes.io/managed-by": "dindcheck-testbed"}},
        "provisioner": cache["provisioner"],
        "parameters": cache["parameters"],
        "reclaimPolicy": "Retain",
        "volumeBindingMode": cache["volumeBindingMode"],
    }
    return yaml.safe_dump(document)


@pytest.mark.usefixtures("permissive")
def test_a_retained_volume_is_left_and_named_with_its_disk(testbed_env: dict[str, str], out_root: Path) -> None:
    """The PV of a Retain class is not deleted (that would orphan its disk): it is named, with its disk, and counted."""
    with applied(testbed_env, retain_class(testbed_env)):
        run = run_suite(testbed_env, out_root / "retain-volume", "-k", "overlay_cache", "--storage-class", RETAIN_CLASS)
        volume = run.check("overlay-cache")["evidence"]["cache_class"]["pv"]
        name = volume["name"]
        try:
            assert volume["reclaim_policy"] == "Retain", volume
            pv = json.loads(kubectl(testbed_env, "get", "persistentvolume", name, "-o", "json"))
            disk = f"directory {pv['spec']['hostPath']['path']} on the node"
            assert (
                f"volume {name} of class {RETAIN_CLASS} (reclaimPolicy Retain) keeps its disk: delete the PV and the "
                f"disk ({disk}) yourself: kubectl delete persistentvolume {name}, then the disk"
            ) in run.output, run.output[-3000:]
            assert f"cleanup incomplete, left behind: persistentvolume/{name} (reclaimPolicy Retain, {disk})" in (
                run.output
            )
            assert run.exit_code == 0, "what cleanup leaves does not change the exit code: " + run.output[-2000:]
            assert Path(pv["spec"]["hostPath"]["path"]).is_dir(), "the volume's disk went"
            assert any(left.startswith(f"persistentvolume/{name} ") for left in labelled_objects(testbed_env))
        finally:
            path = Path(json.loads(kubectl(testbed_env, "get", "pv", name, "-o", "json"))["spec"]["hostPath"]["path"])
            kubectl(testbed_env, "delete", "persistentvolume", name, "--ignore-not-found")
            if path.is_relative_to(TESTBED_ROOT):
                shutil.rmtree(path, ignore_errors=True)
    assert wait_until_clean(testbed_env, 30) == []


@pytest.mark.usefixtures("permissive")
def test_keep_on_a_borrowed_namespace_says_it_keeps_the_runs_label(testbed_env: dict[str, str], out_root: Path) -> None:
    """--keep with --namespace-pod-security leaves the run's label: the run says so and how to put the old one back."""
    namespace = "dindcheck-keep-borrowed"
    with fresh_namespace(testbed_env, namespace):
        kubectl(testbed_env, "label", "namespace", namespace, f"{PSA_LABEL}=baseline")
        privileged = pod_manifest(
            "dc-psa-check", namespace, testbed_env["TESTBED_IMAGE_TOOLS"], securityContext={"privileged": True}
        )
        wait_until_enforced(testbed_env, privileged, 'violates PodSecurity "baseline:latest"')
        run = run_suite(
            testbed_env,
            out_root / "keep-borrowed",
            "-k",
            "privileged_admission",
            "--namespace",
            namespace,
            "--namespace-pod-security",
            "privileged",
            "--keep",
        )
        assert run.check("privileged-admission")["status"] == "pass", run.output[-3000:]
        restore = f"kubectl label namespace {namespace} {PSA_LABEL}=baseline --overwrite"
        said = (
            f"--keep: namespace {namespace} keeps the run's label {PSA_LABEL}=privileged (it was baseline); "
            f"restore it with: {restore}"
        )
        assert said in run.output, run.output[-3000:]
        label = r"jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}"
        assert kubectl(testbed_env, "get", "namespace", namespace, "-o", label).strip() == "privileged"
        kubectl(testbed_env, *shlex.split(restore)[1:])
        assert kubectl(testbed_env, "get", "namespace", namespace, "-o", label).strip() == "baseline"
    assert wait_until_clean(testbed_env, 60) == []
