"""deploy/kubernetes validated against the Kubernetes schemas (kubernetes-validate, strict),
rendered the way users would (`kubectl kustomize`, when kubectl is installed), and checked for
what the handler's promises need: probes, drain timing, non-root, read-only root, secrets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

KUBERNETES = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
VERSION = "1.30.0"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d]


@pytest.mark.parametrize(
    "name",
    [
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
        "hpa.yaml",
        "networkpolicy.yaml",
        "ingress.yaml",
        "secret.example.yaml",
    ],
)
def test_manifest_is_valid_against_the_kubernetes_schemas(name: str) -> None:
    for document in documents(name):
        kubernetes_validate.validate(document, VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    (kustomization,) = documents("kustomization.yaml")
    listed = set(kustomization["resources"])
    shipped = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == shipped - {"secret.example.yaml"}


def test_kubectl_kustomize_renders_it() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests are checked one by one above")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert sorted(d["kind"] for d in rendered) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
    ]
    for document in rendered:
        kubernetes_validate.validate(document, VERSION, strict=True)


def test_the_deployment_keeps_the_handlers_promises() -> None:
    (deployment,) = documents("deployment.yaml")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][:3] == ["serve", "--host", "0.0.0.0"]
    # preStop sleep + drain delay + graceful timeout fit in the grace period.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[-1] == "import time; time.sleep(5)"
    drain = int(env["TOGETHER_DRAIN_DELAY"])
    graceful = int(env["TOGETHER_GRACEFUL_TIMEOUT"])
    assert 5 + drain + graceful < pod["terminationGracePeriodSeconds"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["envFrom"] == [{"secretRef": {"name": "together-reconcile"}}]
    assert not any("SECRET" in name or "STATE_URL" in name for name in env)
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == env["TOGETHER_METRICS_PORT"]


def test_only_the_public_routes_are_in_the_ingress() -> None:
    (ingress,) = documents("ingress.yaml")
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/gorgias/events", "/oauth/gorgias/"]
