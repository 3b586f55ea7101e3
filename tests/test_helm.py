"""The Helm chart (helm/radmesh): lint, render, validate, and the policies it promises.

No cluster runs here. Every profile (default = GPU production, values-cpu.yaml, values-gpu.yaml
with every optional part on) is rendered once per session with the repository's helm
(.tools/helm, from scripts/bootstrap.sh); every rendered object is validated against the
Kubernetes schemas bundled with kubernetes-validate (strict: unknown fields are errors), custom
resources against helm/crd-schemas (written from the published CRDs), and the tests below read
the objects for the chart's rules: ports from the one service table, probes, resources,
security contexts, NetworkPolicy coverage, autoscalers, secrets, images. checkov runs on the
rendered profiles with the skips of helm/.checkov.yaml.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "radmesh"
CRD_SCHEMAS = ROOT / "helm" / "crd-schemas"
HELM = ROOT / ".tools" / "helm" / "helm"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_CONFIG = ROOT / "helm" / ".checkov.yaml"
KUBERNETES_VERSION = "1.37.0"   # the newest kubernetes-validate bundles
NAMESPACE = "radmesh"
RELEASE = "rm"
PROFILES = {"default": [], "cpu": ["-f", str(CHART / "values-cpu.yaml")], "gpu": ["-f", str(CHART / "values-gpu.yaml")]}
SERVICE_NAMES = ("text", "segmentation", "measurement", "report", "assistant")
# who calls whom (DESIGN.md's mesh, plus the helm test pod and the Ray batch pods)
CALLERS = {
    "text": {"assistant", "segmentation"},
    "segmentation": {"assistant"},
    "measurement": {"assistant"},
    "report": {"assistant"},
    "assistant": {"ui", "test"},
    "triton": {"segmentation"},
    "ui": set(),
    "test": set(),
}
EXTERNAL = {"ui", "assistant"}          # the only components reachable from outside the release
GUARANTEED = {"triton", "segmentation"}  # requests == limits
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
                ("ray.io/v1", "RayCluster"): "raycluster.json", ("ray.io/v1", "RayJob"): "rayjob.json"}

pytestmark = pytest.mark.skipif(not HELM.is_file(), reason="helm is missing: run scripts/bootstrap.sh")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"helm {' '.join(args)}:\n{r.stderr}"
    return r


def template(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args, check=check)


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """profile → the rendered objects (helm test hooks included)."""
    return {name: docs_of(template(*args).stdout) for name, args in PROFILES.items()}


@pytest.fixture(scope="module")
def rendered_text() -> dict[str, str]:
    return {name: template(*args).stdout for name, args in PROFILES.items()}


def ports_table() -> dict:
    from radmesh.services import SERVICES
    from radmesh.up import TRITON_PORTS, UI_PORT

    return {"services": {n: (i.port, i.metrics_port) for n, i in SERVICES.items()}, "ui": UI_PORT,
            "triton": dict(TRITON_PORTS)}


def component(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, comp: str) -> dict:
    found = [o for o in by_kind(objs, kind) if component(o) == comp]
    assert len(found) == 1, f"{len(found)} {kind} objects of component {comp}"
    return found[0]


def pod_templates(objs: list[dict]) -> list[tuple[str, dict]]:
    """(where, pod template {metadata, spec}) for every pod the objects make."""
    out = []
    for o in objs:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((name, o["spec"]["template"]))
        elif o["kind"] == "Pod":
            out.append((name, {"metadata": o["metadata"], "spec": o["spec"]}))
        elif o["kind"] in ("RayCluster", "RayJob"):
            spec = o["spec"].get("rayClusterSpec", o["spec"])
            out.append((f"{name} head", spec["headGroupSpec"]["template"]))
            for g in spec.get("workerGroupSpecs", []):
                out.append((f"{name} workers {g['groupName']}", g["template"]))
            if "submitterPodTemplate" in o["spec"]:
                out.append((f"{name} submitter", o["spec"]["submitterPodTemplate"]))
    return out


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


# --- the ports come from the one service table ---------------------------------------------------

def test_ports_file_is_generated_from_the_service_table():
    spec = importlib.util.spec_from_file_location("gen_chart_ports", ROOT / "scripts" / "gen_chart_ports.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (CHART / "files" / "services.json").read_text() == gen.render(), \
        "helm/radmesh/files/services.json is stale: run python scripts/gen_chart_ports.py"


def test_no_port_is_typed_into_values_or_templates():
    """Ports live in files/services.json only: no service or Triton port appears in values or templates."""
    t = ports_table()
    ports = {p for pair in t["services"].values() for p in pair} | {t["ui"]} | set(t["triton"].values())
    texts = {p: p.read_text() for p in [*CHART.glob("values*.yaml"), *CHART.rglob("templates/**/*")] if p.is_file()}
    hits = [f"{p.relative_to(CHART)}: {port}" for p, text in texts.items() for port in ports
            if re.search(rf"(?<![\d.]){port}(?![\d.])", text)]
    assert not hits, hits


@pytest.mark.parametrize("profile", PROFILES)
def test_services_and_containers_use_the_table_ports(rendered, profile):
    objs, t = rendered[profile], ports_table()
    for name, (port, metrics) in t["services"].items():
        svc = one(objs, "Service", name)
        assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"grpc": port, "metrics": metrics}
        c = one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": port, "metrics": metrics}
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["RADMESH_PORT"] == str(port) and env["RADMESH_METRICS_PORT"] == str(metrics)
        assert env["RADMESH_HOST"] == "0.0.0.0"
        assert c["args"] == ["serve", name]
    ui = one(objs, "Service", "ui")
    assert [p["port"] for p in ui["spec"]["ports"]] == [t["ui"]]
    tri = one(objs, "Service", "triton")
    assert {p["name"]: p["port"] for p in tri["spec"]["ports"]} == t["triton"]


@pytest.mark.parametrize("profile", PROFILES)
def test_callers_are_wired_to_their_callees(rendered, profile):
    objs, t = rendered[profile], ports_table()
    prefix = f"{RELEASE}-radmesh"

    def env_of(comp):
        c = one(objs, "Deployment", comp)["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in c["env"]}

    assistant = env_of("assistant")
    for callee in ("text", "segmentation", "measurement", "report"):
        assert assistant[f"RADMESH_{callee.upper()}_URL"] == f"{prefix}-{callee}:{t['services'][callee][0]}"
    seg = env_of("segmentation")
    assert seg["RADMESH_TEXT_URL"] == f"{prefix}-text:{t['services']['text'][0]}"
    assert seg["RADMESH_TRITON_URL"] == f"{prefix}-triton:{t['triton']['grpc']}"
    gpu = profile != "cpu"
    assert seg["RADMESH_TRITON_MODEL"] == ("universal_seg_trt" if gpu else "universal_seg")
    assert env_of("ui")["RADMESH_UI_ASSISTANT_URL"] == f"{prefix}-assistant:{t['services']['assistant'][0]}"


# --- helm lint / template / schemas -------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint(profile):
    r = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *PROFILES[profile])
    assert "0 chart(s) failed" in r.stdout, r.stdout


@pytest.mark.parametrize("profile", PROFILES)
def test_every_object_validates_against_its_schema(rendered, profile):
    import kubernetes_validate

    errors = []
    for o in rendered[profile]:
        where = f"{o['kind']}/{o['metadata']['name']}"
        custom = CUSTOM_KINDS.get((o["apiVersion"], o["kind"]))
        try:
            if custom:
                jsonschema.validate(o, json.loads((CRD_SCHEMAS / custom).read_text()))
            else:
                kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as e:
            errors.append(f"{where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: no schema for {o['apiVersion']} {o['kind']} (add one to helm/crd-schemas)")
    # the pod templates inside custom resources get Kubernetes' own schema, as core/v1 PodTemplates
    for where, tpl in pod_templates([o for o in rendered[profile] if o["kind"] in ("RayCluster", "RayJob")]):
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": tpl}
        try:
            kubernetes_validate.validate(wrapped, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {e.message}")
    assert not errors, "\n".join(errors)


def test_profiles_render_what_they_promise(rendered):
    kinds = {p: {o["kind"] for o in objs} for p, objs in rendered.items()}
    assert {"Deployment", "Service", "ServiceAccount", "NetworkPolicy", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "Pod"} <= kinds["default"]
    assert {"ServiceMonitor", "Ingress", "RayJob"} <= kinds["gpu"]
    assert not ({"ServiceMonitor", "Ingress", "RayJob", "RayCluster"} & kinds["default"]), "optional parts are off by default"
    for p, objs in rendered.items():
        deployments = {component(d) for d in by_kind(objs, "Deployment")}
        assert deployments == {*SERVICE_NAMES, "ui", "triton"}, p


BAD_VALUES = {
    "latest tag": ["--set", "image.radmesh.tag=latest"],
    "latest tag of triton": ["--set", "image.tritonGpu.tag=latest"],
    "bad digest": ["--set", "image.ui.digest=sha256:nothex"],
    "unknown value (a typo)": ["--set", "services.text.replicaz=3"],
    "unknown service": ["--set", "services.search.replicas=1"],
    "limits missing": ["--set", "services.text.resources.limits=null"],
    "memory not a quantity": ["--set", "services.report.resources.requests.memory=lots"],
    "log level": ["--set", "logLevel=chatty"],
    "negative replicas": ["--set", "services.text.replicas=-1"],
    "HPA above 100%": ["--set", "services.text.autoscaling.targetCPUUtilizationPercentage=150"],
    "plan batch beyond max_batch_size": ["--set", "triton.trtPlan.maxBatch=16"],
    "plan cache type": ["--set", "triton.trtPlan.cache.type=hostPath"],
    "root filesystem writable": ["--set", "containerSecurityContext.readOnlyRootFilesystem=false"],
    "privilege escalation": ["--set", "containerSecurityContext.allowPrivilegeEscalation=true"],
    "root": ["--set", "podSecurityContext.runAsNonRoot=false"],
    "capabilities kept": ["--set", "containerSecurityContext.capabilities.drop=null"],
    "UI without a login or a secret": ["--set", "ui.auth.existingSecret=", "--set", "ui.auth.noLogin=false"],
    "segmentation not guaranteed": ["--set", "services.segmentation.resources.limits.cpu=8"],
    "triton not guaranteed": ["--set", "triton.resources.limits.memory=32Gi"],
    "bad ingress host": ["--set", "ingress.ui.host=Not A Host"],
}


@pytest.mark.parametrize("args", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_refused(args):
    r = template(*args, check=False)
    assert r.returncode != 0, f"accepted: {args}"
    assert "schema" in r.stderr or "execution error" in r.stderr, r.stderr


def test_good_overrides_are_accepted():
    template("--set", "image.radmesh.digest=sha256:" + "a" * 64, "--set", "services.segmentation.resources.limits.cpu=4",
             "--set", "triton.trtPlan.cache.type=emptyDir", "--set", "networkPolicy.externalFrom=null")


# --- pods: resources, security, images, probes --------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_every_container_has_requests_and_limits(rendered, profile):
    missing = []
    for where, tpl in pod_templates(rendered[profile]):
        for c in containers(tpl["spec"]):
            res = c.get("resources", {})
            for side in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(side, {}):
                        missing.append(f"{where} {c['name']}: {side}.{r}")
    assert not missing, missing


@pytest.mark.parametrize("profile", PROFILES)
def test_triton_and_segmentation_get_guaranteed_qos(rendered, profile):
    for comp in GUARANTEED:
        spec = one(rendered[profile], "Deployment", comp)["spec"]["template"]["spec"]
        for c in containers(spec):
            assert c["resources"]["requests"] == c["resources"]["limits"], f"{comp} {c['name']}"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_container_is_locked_down(rendered, profile):
    bad = []
    for where, tpl in pod_templates(rendered[profile]):
        pod = tpl["spec"].get("securityContext", {})
        if not pod.get("runAsNonRoot") or pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            bad.append(f"{where}: pod securityContext {pod}")
        for c in containers(tpl["spec"]):
            sc = c.get("securityContext", {})
            ok = (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                  and sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add")
                  and not sc.get("privileged") and sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True
                  and sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type") == "RuntimeDefault")
            if not ok:
                bad.append(f"{where} {c['name']}: {sc}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("profile", PROFILES)
def test_no_pod_mounts_an_api_token_unless_it_needs_the_api(rendered, profile):
    objs = rendered[profile]
    for sa in by_kind(objs, "ServiceAccount"):
        assert sa.get("automountServiceAccountToken") is False, sa["metadata"]["name"]
    for where, tpl in pod_templates(objs):
        assert tpl["spec"].get("automountServiceAccountToken") is False, where


def test_only_an_autoscaling_ray_head_talks_to_the_api():
    """With batch.autoscale the Ray head (its autoscaler) keeps KubeRay's account and reaches the API server."""
    objs = docs_of(template(*PROFILES["gpu"], "--set", "batch.autoscale=true").stdout)
    (job,) = by_kind(objs, "RayJob")
    assert job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] is True
    for where, tpl in pod_templates(objs):
        head = where.endswith(" head")
        assert ("automountServiceAccountToken" not in tpl["spec"]) == head, where
    policy = one(objs, "NetworkPolicy", "batch")
    api = [r for r in policy["spec"]["egress"] if {p["port"] for p in r.get("ports", [])} == {443, 6443}]
    assert len(api) == 1


@pytest.mark.parametrize("profile", PROFILES)
def test_images_are_pinned_never_latest(rendered, profile):
    for where, tpl in pod_templates(rendered[profile]):
        for c in containers(tpl["spec"]):
            image = c["image"]
            name, _, tag = image.split("@")[0].rpartition(":")
            assert name and tag and "/" not in tag, f"{where} {c['name']}: {image} has no tag"
            assert tag != "latest", f"{where} {c['name']}: {image}"


def test_image_tags_default_to_app_version_and_take_a_digest(rendered):
    app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    c = one(rendered["default"], "Deployment", "text")["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].endswith(f":{app}")
    digest = "sha256:" + "b" * 64
    objs = docs_of(template("--set", f"image.radmesh.digest={digest}").stdout)
    c = one(objs, "Deployment", "text")["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].endswith(f":{app}@{digest}")


@pytest.mark.parametrize("profile", PROFILES)
def test_probes(rendered, profile):
    objs, t = rendered[profile], ports_table()
    tls = profile == "gpu"
    for name in SERVICE_NAMES:
        c = one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        port = t["services"][name][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            # kubelet gRPC probes speak plaintext only; with TLS the container asks its own health over TLS
            expected = {"exec": {"command": ["python", "-m", "radmesh.common.healthcheck", "--target",
                                             f"127.0.0.1:{port}", "--tls-server-name", f"{RELEASE}-radmesh-{name}",
                                             "--timeout-s", str(c[probe]["timeoutSeconds"])]}} if tls \
                else {"grpc": {"port": port}}
            got = {k: v for k, v in c[probe].items() if k in ("grpc", "tcpSocket", "httpGet", "exec")}
            assert got == expected, f"{name} {probe}: {c[probe]}"
    tri = one(objs, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    assert tri["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert tri["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert tri["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # loading takes time: the startup probe gives Triton minutes before liveness counts
    assert tri["startupProbe"]["periodSeconds"] * tri["startupProbe"]["failureThreshold"] >= 300
    ui = one(objs, "Deployment", "ui")["spec"]["template"]["spec"]["containers"][0]
    assert all(ui[p]["httpGet"] == {"path": "/healthz", "port": "http"}
               for p in ("startupProbe", "readinessProbe", "livenessProbe"))


@pytest.mark.parametrize("profile", PROFILES)
def test_graceful_drain_fits_the_grace_period(rendered, profile):
    for name in SERVICE_NAMES:
        spec = one(rendered[profile], "Deployment", name)["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        pause = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] > float(env["RADMESH_DRAIN_S"]) + pause


# --- Triton: GPU scheduling and the TensorRT plan -----------------------------------------------

def triton_scripts(objs: list[dict]) -> dict:
    return next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-triton-scripts"))["data"]


@pytest.mark.parametrize("profile", ["default", "gpu"])
def test_triton_on_gpu_nodes_builds_its_plan(rendered, profile):
    from radmesh.triton.launcher import read_config

    objs = rendered[profile]
    values = yaml.safe_load((CHART / "values.yaml").read_text())["triton"]
    spec = one(objs, "Deployment", "triton")["spec"]["template"]["spec"]
    main = spec["containers"][0]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == values["gpu"]["count"]
    assert spec["nodeSelector"] == values["gpu"]["nodeSelector"]
    assert spec["tolerations"] == values["gpu"]["tolerations"]
    assert "--load-model=universal_seg_trt" in main["args"]
    assert [c["name"] for c in spec["initContainers"]] == ["build-plan"]
    build = spec["initContainers"][0]
    assert build["image"] == main["image"], "the plan is built by the TensorRT that serves it"
    assert build["resources"]["limits"]["nvidia.com/gpu"] == values["gpu"]["count"]
    env = {e["name"]: e["value"] for e in build["env"]}
    plan_sh = triton_scripts(objs)["build-plan.sh"]
    # the cache key: the GPU model, the TensorRT version and the ONNX graph's digest
    assert "nvidia-smi --query-gpu=name" in plan_sh
    assert 'plan="/plan-cache/plans/$gpu/trt-$trt/$digest/model.plan"' in plan_sh
    assert 'if [ -s "$plan" ]' in plan_sh, "an existing plan is reused"
    assert 'build_trt_plan.sh "$onnx"' in plan_sh, "the repository's one plan builder, not a copy of it"
    # the profile covers the served config's batch and keeps the shapes' order
    config = read_config(ROOT / "model_repository" / "universal_seg_trt" / "config.pbtxt")
    assert int(env["MAX_BATCH"]) == config.max_batch_size
    assert int(env["MIN_BATCH"]) <= int(env["OPT_BATCH"]) <= int(env["MAX_BATCH"])
    assert int(env["MIN_CLASSES"]) <= int(env["OPT_CLASSES"]) <= int(env["MAX_CLASSES"])
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts["/models/universal_seg_trt/1"] == "plan-dir" and mounts["/plan-cache"] == "plan-cache"
    claim = next(v for v in spec["volumes"] if v["name"] == "plan-cache")["persistentVolumeClaim"]["claimName"]
    assert claim in {o["metadata"]["name"] for o in by_kind(objs, "PersistentVolumeClaim")}


def test_cpu_profile_needs_no_gpu(rendered):
    for where, tpl in pod_templates(rendered["cpu"]):
        for c in containers(tpl["spec"]):
            assert "nvidia.com/gpu" not in c["resources"].get("limits", {}), where
        assert "nvidia.com/gpu.present" not in tpl["spec"].get("nodeSelector", {}), where
    spec = one(rendered["cpu"], "Deployment", "triton")["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    main = spec["containers"][0]
    assert "--load-model=universal_seg" in main["args"]
    shm = next(v for v in spec["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory", "the Python backend's tensors go through /dev/shm"


def test_build_plan_script_keys_the_cache_and_reuses_plans(rendered, tmp_path):
    """The rendered build-plan.sh with scripts/build_trt_plan.sh, stand-ins for nvidia-smi and
    trtexec, and the served config as the image has it: the plan lands under the GPU model and
    TensorRT version with the config's shapes, and a second start links it without building."""
    from google.protobuf import text_format

    from radmesh.model.export import INPUT_EMBEDDING, INPUT_IMAGE
    from radmesh.triton.launcher import read_config

    cache, plan_dir, bin_dir = tmp_path / "cache", tmp_path / "plan-dir", tmp_path / "bin"
    script = triton_scripts(rendered["default"])["build-plan.sh"]
    script = script.replace("/plan-cache", str(cache)).replace("/plan-dir", str(plan_dir))
    for d in (cache, plan_dir, bin_dir):
        d.mkdir()
    source = read_config(ROOT / "model_repository" / "universal_seg_trt" / "config.pbtxt")
    config = tmp_path / "config.pbtxt"
    config.write_text(text_format.MessageToString(source))    # as radmesh.triton.launcher writes it
    onnx = tmp_path / "universal_seg_trt.onnx"
    onnx.write_bytes(b"stands in for the graph")
    log = tmp_path / "trtexec.log"
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3'\n")
    (bin_dir / "trtexec").write_text(
        "#!/bin/sh\n"
        "if [ \"$1\" = --help ]; then echo '&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --help';"
        " echo '  --fp16 --skipInference'; exit 0; fi\n"
        f"echo \"$@\" >> {log}\n"
        "for a in \"$@\"; do case $a in --saveEngine=*) echo plan > \"${a#--saveEngine=}\";; esac; done\n")
    shutil.copy(ROOT / "scripts" / "build_trt_plan.sh", bin_dir / "build_trt_plan.sh")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    spec = one(rendered["default"], "Deployment", "triton")["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in spec["initContainers"][0]["env"]}
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", TRTEXEC=str(bin_dir / "trtexec"),
               ONNX=str(onnx), CONFIG=str(config), HOSTNAME="pod-1")
    for _ in range(2):
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    assert "cached" in r.stdout
    (call,) = log.read_text().splitlines()          # built once, reused the second time
    dims = {i.name: list(i.dims) for i in source.input}
    assert set(dims) == {INPUT_IMAGE, INPUT_EMBEDDING}
    image = "x".join(str(d) for d in dims[INPUT_IMAGE])
    b, k, e = env["MAX_BATCH"], env["MAX_CLASSES"], dims[INPUT_EMBEDDING][-1]
    assert "--fp16" in call and f"--maxShapes={INPUT_IMAGE}:{b}x{image},{INPUT_EMBEDDING}:{b}x{k}x{e}" in call
    target = Path(os.readlink(plan_dir / "model.plan"))
    assert target.relative_to(cache / "plans" / "NVIDIA_H100_80GB_HBM3" / "trt-100300")
    assert target.read_text() == "plan\n"


# --- NetworkPolicies ----------------------------------------------------------------------------

def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, selector   # the chart only uses matchLabels
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("profile", PROFILES)
def test_every_pod_is_covered_by_a_network_policy(rendered, profile):
    policies = by_kind(rendered[profile], "NetworkPolicy")
    for where, tpl in pod_templates(rendered[profile]):
        labels = tpl["metadata"]["labels"]
        covering = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        assert covering, f"{where} is selected by no NetworkPolicy"
        assert all(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in covering), where


@pytest.mark.parametrize("profile", PROFILES)
def test_each_component_is_reachable_only_from_its_callers(rendered, profile):
    objs, t = rendered[profile], ports_table()
    batch = profile == "gpu"
    metrics_ports = {m for _, m in t["services"].values()} | {t["triton"]["metrics"]}
    for policy in by_kind(objs, "NetworkPolicy"):
        comp = component(policy)
        expected = set(CALLERS.get(comp, set()))
        if batch and comp in SERVICE_NAMES:
            expected.add("batch")
        callers, external = set(), False
        for rule in policy["spec"].get("ingress") or []:
            ports = {p["port"] for p in rule.get("ports", [])}
            peers = rule.get("from")
            if comp == "batch":
                if ports == {8265}:
                    continue   # the KubeRay operator reads job status from the head's dashboard
                callers |= {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in peers}
                assert not ports, "Ray pods talk to each other on every port"
                continue
            assert ports, f"{comp}: a rule without ports opens every port"
            if ports <= metrics_ports:
                continue   # Prometheus, on the metrics port only
            for peer in peers or [{"anywhere": True}]:
                if set(peer) == {"podSelector"}:
                    callers.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"])
                else:
                    external = True
        if comp == "batch":
            expected = {"batch"}
        assert callers == expected, f"{comp}: reachable from {callers}, expected {expected}"
        assert external == (comp in EXTERNAL), f"{comp}: reachable from outside: {external}"


@pytest.mark.parametrize("profile", PROFILES)
def test_egress_goes_only_to_callees_and_dns(rendered, profile):
    for policy in by_kind(rendered[profile], "NetworkPolicy"):
        comp = component(policy)
        callees = set()
        for rule in policy["spec"]["egress"]:
            ports = {(p["protocol"], p["port"]) for p in rule.get("ports", [])}
            if ports == {("UDP", 53), ("TCP", 53)}:
                continue
            for peer in rule["to"]:
                assert set(peer) == {"podSelector"}, f"{comp}: egress outside the release: {peer}"
                callees.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"])
        expected = {callee for callee, who in CALLERS.items() if comp in who}
        if comp == "batch":
            expected = {*SERVICE_NAMES, "batch"}
        assert callees == expected, f"{comp} calls {callees}, expected {expected}"


# --- autoscaling, disruption budgets, monitoring ------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_autoscalers_target_real_deployments(rendered, profile):
    objs = rendered[profile]
    deployments = {d["metadata"]["name"]: d for d in by_kind(objs, "Deployment")}
    hpas = by_kind(objs, "HorizontalPodAutoscaler")
    if profile == "cpu":
        assert not hpas, "the CPU profile runs one pod each"
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, ref
        assert "replicas" not in deployments[ref["name"]]["spec"], f"{ref['name']}: the HPA owns replicas"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        if component(hpa) == "triton":
            assert metric["type"] == "Pods", metric
        else:
            assert metric == {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": metric["resource"]["target"]["averageUtilization"]}}}
    if profile != "cpu":
        assert {component(h) for h in hpas} >= {*SERVICE_NAMES, "ui"}


def test_triton_scales_on_queue_time_per_request(rendered):
    objs = rendered["gpu"]
    hpa = one(objs, "HorizontalPodAutoscaler", "triton")
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rule_cm = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-adapter-rule"))
    rule = yaml.safe_load(rule_cm["data"]["rules.yaml"])["rules"][0]
    assert rule["name"]["as"] == metric
    query = rule["metricsQuery"]
    assert query.index("rate(nv_inference_queue_duration_us") < query.index("/") < \
        query.index("rate(nv_inference_request_success"), query
    # off by default: neither the rule nor the HPA without prometheus-adapter
    assert not [o for o in rendered["default"] if o["metadata"]["name"].endswith("-adapter-rule")]
    assert not [h for h in by_kind(rendered["default"], "HorizontalPodAutoscaler") if component(h) == "triton"]


@pytest.mark.parametrize("profile", PROFILES)
def test_disruption_budgets_select_deployments(rendered, profile):
    objs = rendered[profile]
    for pdb in by_kind(objs, "PodDisruptionBudget"):
        matched = [d for d in by_kind(objs, "Deployment")
                   if selects(pdb["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert len(matched) == 1, pdb["metadata"]["name"]
        assert "maxUnavailable" in pdb["spec"], "minAvailable on one replica would block node drains"
    if profile == "default":
        assert {component(p) for p in by_kind(objs, "PodDisruptionBudget")} == {*SERVICE_NAMES, "ui", "triton"}


def test_service_monitors_scrape_every_service_and_triton(rendered):
    objs = rendered["gpu"]
    monitors = by_kind(objs, "ServiceMonitor")
    assert {component(m) for m in monitors} == {*SERVICE_NAMES, "triton"}
    for m in monitors:
        svc = one(objs, "Service", component(m))
        assert selects(m["spec"]["selector"], svc["metadata"]["labels"])
        assert [e["port"] for e in m["spec"]["endpoints"]] == ["metrics"]
        assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}


def test_grafana_dashboard_configmap_follows_the_file(rendered):
    dashboard = CHART / "files" / "grafana-dashboard.json"
    cms = [o for o in by_kind(rendered["gpu"], "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    if dashboard.is_file():
        (cm,) = cms
        assert json.loads(cm["data"]["radmesh.json"]) == json.loads(dashboard.read_text())
    else:
        assert not cms, "no dashboard file, no ConfigMap (and no error)"
    assert not [o for o in rendered["default"] if o["metadata"]["labels"].get("grafana_dashboard")]


# --- secrets, TLS, ingresses --------------------------------------------------------------------

SECRETISH = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|(password|passwd|token|secret)\s*[:=]\s*\S", re.I)


@pytest.mark.parametrize("profile", PROFILES)
def test_no_secret_values_in_configmaps_or_env(rendered, profile):
    objs = rendered[profile]
    assert not by_kind(objs, "Secret"), "the chart takes existing Secrets; it never carries their values"
    for cm in by_kind(objs, "ConfigMap"):
        for key, value in cm.get("data", {}).items():
            assert not SECRETISH.search(value), f"{cm['metadata']['name']}/{key}"
    for where, tpl in pod_templates(objs):
        for c in containers(tpl["spec"]):
            for e in c.get("env", []):
                assert "secretKeyRef" not in e.get("valueFrom", {}), f"{where} {e['name']}: mount secrets as files"
                if re.search(r"TOKEN|PASSWORD|SECRET", e["name"]):
                    assert e["name"].endswith("_FILE"), f"{where} {e['name']} carries a secret value"


def test_tls_and_token_come_from_secrets(rendered):
    objs = rendered["gpu"]
    for name in SERVICE_NAMES:
        spec = one(objs, "Deployment", name)["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in spec["volumes"]}
        assert vols["tls"]["secret"]["secretName"] == "radmesh-tls"
        assert vols["api-token"]["secret"]["secretName"] == "radmesh-api-token"
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["RADMESH_TLS_CLIENT_CA"] == env["RADMESH_TLS_CA"], "mutual TLS in the GPU profile"
        assert env["RADMESH_TLS_CERT"].startswith("/etc/radmesh/tls/")
        assert env["RADMESH_AUTH_TOKEN_FILE"].startswith("/etc/radmesh/api-token/")
    tri = one(objs, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    assert "--grpc-use-ssl=true" in tri["args"] and "--grpc-use-ssl-mutual=true" in tri["args"]
    for name in SERVICE_NAMES:
        spec = one(rendered["default"], "Deployment", name)["spec"]["template"]["spec"]
        assert "tls" not in {v["name"] for v in spec["volumes"]}, "TLS is off by default"


def test_ingresses(rendered):
    objs = rendered["gpu"]
    ui = one(objs, "Ingress", "ui")
    assert ui["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie", "sticky sessions"
    assert ui["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"] == ports_table()["ui"]
    api = one(objs, "Ingress", "assistant")
    assert api["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] in ("GRPC", "GRPCS")
    backend = api["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["port"]["number"] == ports_table()["services"]["assistant"][0]
    assert not by_kind(rendered["default"], "Ingress")


# --- helm test, NOTES, batch ---------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_helm_test_pod_asks_the_assistant(rendered, profile):
    (pod,) = by_kind(rendered[profile], "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    script = " ".join(c["args"])
    assert "radmesh ask --server \"$ASSISTANT\"" in script and "radmesh phantom" in script
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["ASSISTANT"] == f"{RELEASE}-radmesh-assistant:{ports_table()['services']['assistant'][0]}"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_notes_say_how_to_reach_the_ui():
    notes = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client").stdout
    notes = notes[notes.index("NOTES:"):]
    assert f"port-forward svc/{RELEASE}-radmesh-ui {ports_table()['ui']}" in notes
    gpu = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *PROFILES["gpu"]).stdout
    assert "https://radmesh.example.org/" in gpu[gpu.index("NOTES:"):]


def test_batch_rayjob_runs_radmesh_batch(rendered):
    (job,) = by_kind(rendered["gpu"], "RayJob")
    entry = job["spec"]["entrypoint"]
    assert re.match(r"radmesh batch --manifest \S+ --prompt '.+' --out \S+ --ray-address auto$", entry), entry
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    # the RayCluster runs the Ray the image installs (pyproject's pin), and its pods call the mesh
    pin = re.search(r'"ray==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == pin
    for where, tpl in pod_templates([job]):
        env = {e["name"]: e.get("value") for e in tpl["spec"]["containers"][0]["env"]}
        assert env["RADMESH_ASSISTANT_URL"] == f"{RELEASE}-radmesh-assistant:{ports_table()['services']['assistant'][0]}", where


# --- checkov ------------------------------------------------------------------------------------

def test_checkov_skips_are_justified():
    text = CHECKOV_CONFIG.read_text().splitlines()
    skips = [i for i, line in enumerate(text) if re.match(r"\s*- CKV_", line)]
    assert skips
    for i in skips:
        check = text[i].strip()[2:]
        assert text[i - 1].strip().startswith(f"# {check} ("), f"{check}: no one-line reason above it"
    for p in CHART.rglob("templates/**/*.yaml"):
        for m in re.finditer(r"checkov\.io/skip\d+: (.*)", p.read_text()):
            assert re.fullmatch(r"CKV_\w+=\S.{10,}", m.group(1).strip()), f"{p.name}: {m.group(0)} (CHECK=reason)"


@pytest.mark.skipif(not CHECKOV.is_file(), reason="checkov is missing (.venv-checkov)")
def test_checkov_passes_on_every_profile(rendered_text, tmp_path):
    for name, text in rendered_text.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    env = {**os.environ, "PATH": f"{HELM.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run([str(CHECKOV), "--config-file", str(CHECKOV_CONFIG), "-d", str(tmp_path), "-o", "json",
                        "--skip-download"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    reports = json.loads(r.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f"{f['check_id']} {f['resource']}: {f['check_name']}"
              for rep in reports for f in rep["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert sum(rep["summary"]["passed"] for rep in reports) > 1000
    shutil.rmtree(tmp_path, ignore_errors=True)

