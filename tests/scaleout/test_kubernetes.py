"""Kubernetes manifests (deploy/k8s): generated settings current, every object valid against the
Kubernetes schemas (kubernetes-validate), the overlays rendered by a real kustomize (``kubectl
kustomize``) and wired together, and KEDA's queue query run against a real migrated PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from ltxserve import manifests
from ltxserve.config import Settings, env_name, is_secret
from ltxserve.queue.postgres import QUEUE, ProcrastinateQueue
from tests.scaleout.conftest import sqlalchemy_url

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu-demo", "gpu")
K8S_VERSION = "1.32"  # oldest Kubernetes these manifests are checked against
KEDA_KINDS = {"ScaledObject"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _validate(doc: dict[str, Any]) -> None:
    """Strict: an unknown field is an error, not silently dropped by the API server."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _patch_files() -> set[Path]:
    out = set()
    for kust in K8S.rglob("kustomization.yaml"):
        for patch in yaml.safe_load(kust.read_text()).get("patches", []):
            if "path" in patch:
                out.add((kust.parent / patch["path"]).resolve())
    return out


def _kustomize(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_settings_files_are_generated_from_settings() -> None:
    for path, text_ in manifests.generated(K8S / "base").items():
        assert path.read_text() == text_, f"run: python -m ltxserve.manifests ({path.name})"


def test_configmap_reads_back_as_the_intended_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings parses every generated line back to the default (or the cluster value)."""
    env = {}
    for line in (K8S / "base" / "settings.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    for key in [k for k in os.environ if k.startswith("LTXSERVE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    for name, field in Settings.model_fields.items():
        var = env_name(name)
        if is_secret(name):
            assert var not in env, f"{var} is a secret: it belongs in the Secret"
            continue
        expected = manifests.CLUSTER_VALUES.get(name, field.default)
        assert getattr(settings, name) == (Path(expected) if name == "data_dir" else expected), var
    secret_keys = [
        line.partition("=")[0]
        for line in (K8S / "base" / "secrets.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert secret_keys == [env_name(n) for n in Settings.model_fields if is_secret(n)]
    assert "LTXSERVE_DATABASE_URL" in secret_keys


def test_every_manifest_is_a_valid_kubernetes_object() -> None:
    """Each file on its own (no kustomize needed): the API's schemas, strictly."""
    patches = _patch_files()
    checked = 0
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.resolve() in patches:
            continue
        for doc in _docs(path):
            if doc["kind"] in KEDA_KINDS:
                continue  # not a built-in kind: checked in test_keda_scaled_object
            _validate(doc)
            checked += 1
    assert checked >= 11


def test_strict_validation_catches_a_misspelled_field() -> None:
    doc = _docs(K8S / "base" / "api.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc)


@pytest.mark.optional  # needs kubectl with kustomize v5: not on PyPI, and Debian 12 ships kubectl 1.20
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_valid_and_wired(overlay: str) -> None:
    objects = _kustomize(overlay)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for obj in objects:
        if obj["kind"] not in KEDA_KINDS:
            _validate(obj)
    names = {kind: {n for k, n in kinds if k == kind} for kind, _ in kinds}
    assert {"ltxserve-api", "ltxserve-worker"} <= names["Deployment"]
    assert names["HorizontalPodAutoscaler"] == {"ltxserve-api"}
    assert names["PodDisruptionBudget"] == {"ltxserve-api", "ltxserve-worker"}
    assert "ltxserve-migrate" in names["Job"]
    # every ConfigMap/Secret a pod reads exists in the render (kustomize rewrote the hashed names),
    # except the production Secret, which the operator creates
    external = {"ltxserve-secrets"} if overlay == "gpu" else set()
    for obj in objects:
        if obj["kind"] not in {"Deployment", "Job"}:
            continue
        spec = obj["spec"]["template"]["spec"]
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        name = source[key]["name"]
                        assert name in names.get(kind, set()) | external, (obj["metadata"]["name"], name)
    api = next(o for o in objects if o["metadata"]["name"] == "ltxserve-api" and o["kind"] == "Deployment")
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"] == ["ltxserve", "serve", "--no-worker"]
    worker = next(
        o for o in objects if o["metadata"]["name"] == "ltxserve-worker" and o["kind"] == "Deployment"
    )
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 600  # the drain finishes the task in hand
    limits = pod["containers"][0]["resources"]["limits"]
    if overlay == "gpu":
        assert limits["nvidia.com/gpu"] == 1
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert pod["nodeSelector"]
        assert ("ScaledObject", "ltxserve-worker") in kinds
    else:
        assert "nvidia.com/gpu" not in limits
        assert ("ScaledObject", "ltxserve-worker") not in kinds


def _scaled_object() -> dict[str, Any]:
    return next(d for d in _docs(K8S / "overlays" / "gpu" / "keda.yaml") if d["kind"] == "ScaledObject")


def test_keda_scaled_object() -> None:
    """The fields of KEDA 2.x's ScaledObject and PostgreSQL scaler (keda.sh/docs/2.x/scalers/postgresql)."""
    so = _scaled_object()
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"name": "ltxserve-worker"}
    assert set(spec) <= {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "triggers",
        "advanced",
        "fallback",
        "idleReplicaCount",
    }
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "postgresql"
    meta = trigger["metadata"]
    assert set(meta) <= {
        "connectionFromEnv",
        "query",
        "targetQueryValue",
        "activationTargetQueryValue",
        "host",
        "port",
        "userName",
        "passwordFromEnv",
        "dbName",
        "sslmode",
    }
    assert all(isinstance(v, str) for v in meta.values())  # KEDA metadata is a map of strings
    assert meta["connectionFromEnv"] in {env_name(n) for n in Settings.model_fields if is_secret(n)}
    assert f"queue_name = '{QUEUE}'" in meta["query"]


async def test_keda_query_counts_the_queue_on_postgres(pg_url: str) -> None:
    """The ScaledObject's query, run on a migrated database with jobs deferred by ltxserve's queue."""
    from ltxserve.db import migrate

    engine = create_async_engine(sqlalchemy_url(pg_url))
    queue = ProcrastinateQueue(Settings(_env_file=None), pg_url)  # type: ignore[call-arg]
    query = text(_scaled_object()["spec"]["triggers"][0]["metadata"]["query"])
    try:
        await migrate.upgrade(engine)
        await queue.start()
        async with engine.connect() as conn:
            assert (await conn.execute(query)).scalar_one() == 0
        async with AsyncSession(engine) as session, session.begin():
            for task_id in ("a", "b", "b"):  # a duplicate job for task b counts once
                await queue.enqueue(session, task_id)
        async with engine.connect() as conn:
            assert (await conn.execute(query)).scalar_one() == 2
            await conn.execute(
                text("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE args ->> 'task_id' = 'a'")
            )
            await conn.commit()
            assert (await conn.execute(query)).scalar_one() == 1
    finally:
        await queue.stop()
        await engine.dispose()
