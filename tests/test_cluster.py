"""cluster/: the Dockerfile, the KubeRay and Spark manifests and the cluster settings, checked against the code.

Nothing is built or applied (no Docker engine, no Kubernetes, no network): the files are parsed and compared with
pyproject.toml, the Makefile, the config models, the CLI the jobs run and the installed Ray.
"""

from __future__ import annotations

import ast
import fnmatch
import itertools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from fusionlog.config import IngestConfig, LLMConfig, load_experiment, load_ingest, load_llm

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
FLAVOURS = ("cpu", "gpu")
KINDS = {("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob"), ("v1", "PersistentVolumeClaim"), ("v1", "Service"),
         ("apps/v1", "Deployment")}
SECRET = "fusionlog-s3"
TOKEN_SECRET = ("fusionlog-ray-token", "auth_token")  # the Ray auth token: Secret name and key

# --------------------------------------------------------------------------------------------------
# the Dockerfile, parsed into stages and instructions


@dataclass
class Instr:
    cmd: str  # upper case
    args: str  # continuation lines joined


@dataclass
class Stage:
    base: str  # the FROM argument, unresolved
    name: str | None
    instrs: list[Instr] = field(default_factory=list)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults (before the first FROM) and the stages, in order."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # comments and blank lines, also inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "the last instruction ends with a line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        cmd, _, rest = line.partition(" ")
        cmd, rest = cmd.upper(), rest.strip()
        if cmd == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            assert len(parts) in (1, 3), f"cannot read FROM {rest}"
            stages.append(Stage(parts[0], name))
        elif not stages:
            assert cmd == "ARG", f"{cmd} before the first FROM"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instrs.append(Instr(cmd, rest))
    return args, stages


@cache
def dockerfile() -> tuple[dict[str, str], tuple[Stage, ...]]:
    args, stages = parse_dockerfile((CLUSTER / "Dockerfile").read_text(encoding="utf-8"))
    return args, tuple(stages)


def _subst(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], text)


def chain(flavour: str) -> tuple[str, list[Stage]]:
    """The external base image and the stages the default target is built from (base first) for ``flavour``."""
    args, stages = dockerfile()
    env = args | {"FLAVOUR": flavour}
    named = {s.name: s for s in stages if s.name}
    out = [stages[-1]]
    while (base := _subst(out[0].base, env)) in named:
        out.insert(0, named[base])
    return base, out


def instructions(flavour: str) -> list[Instr]:
    return [i for s in chain(flavour)[1] for i in s.instrs]


def commands(run: str) -> list[list[str]]:
    """A RUN's simple commands (split at ; && || |), shell keywords (if/then/...) dropped."""
    lex = shlex.shlex(run, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    out: list[list[str]] = [[]]
    for tok in lex:
        if tok in (";", "&&", "||", "|"):
            out.append([])
        elif out[-1] or tok not in ("if", "then", "else", "elif", "fi", "do", "done", "!"):
            out[-1].append(tok)
    return [c for c in out if c]


_PIP_VALUE_OPTS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint", "-r",
                   "--requirement", "-t", "--target", "--prefix", "--root"}


def build_steps(flavour: str) -> list[tuple[str, list[str]]]:
    """In build order: ("install", requirements), ("uninstall", names) and ("run", argv) for other commands."""
    steps: list[tuple[str, list[str]]] = []
    for ins in instructions(flavour):
        if ins.cmd != "RUN":
            continue
        for argv in commands(ins.args):
            pos = next((k for k, tok in enumerate(argv) if PurePosixPath(tok).name in ("pip", "pip3")), None)
            if pos is None or pos + 1 >= len(argv) or argv[pos + 1] not in ("install", "uninstall"):
                steps.append(("run", argv))
                continue
            reqs, rest, k = [], argv[pos + 2:], 0
            while k < len(rest):
                if rest[k] in _PIP_VALUE_OPTS:
                    k += 2
                    continue
                if rest[k] == "-e" or not rest[k].startswith("-"):
                    reqs.append(rest[k + 1] if rest[k] == "-e" else rest[k])
                    k += 2 if rest[k] == "-e" else 1
                    continue
                k += 1
            steps.append((argv[pos + 1], reqs))
    return steps


def _extras(req: str) -> tuple[str, frozenset[str]]:
    m = re.fullmatch(r"([^\[]+)(?:\[([^\]]*)\])?", req)
    assert m, req
    return m.group(1), frozenset(x.strip() for x in (m.group(2) or "").split(",") if x.strip())


def copies(flavour: str) -> list[tuple[list[str], str]]:
    """(sources, absolute destination) of every COPY in the flavour's stages, resolved against WORKDIR."""
    out, workdir = [], PurePosixPath("/")
    for ins in instructions(flavour):
        if ins.cmd == "WORKDIR":
            workdir = workdir / ins.args
        elif ins.cmd == "COPY":
            parts = [p for p in shlex.split(ins.args) if not p.startswith("--")]
            out.append((parts[:-1], str(workdir / parts[-1])))
    return out


def env_of(flavour: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in instructions(flavour):
        if ins.cmd == "ENV":
            for kv in shlex.split(ins.args):
                k, _, v = kv.partition("=")
                env[k] = v
    return env


def _pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _pin(name: str) -> str:
    for dep in _pyproject()["project"]["dependencies"]:
        m = re.fullmatch(rf"{re.escape(name)}(?:\[[^\]]*\])?==(\S+)", dep)
        if m:
            return m.group(1)
    raise AssertionError(f"{name} is not pinned in pyproject.toml")


def _makefile_cuda_only() -> set[str]:
    m = re.search(r"^CUDA_ONLY\s*:?=\s*(.+)$", (REPO / "Makefile").read_text(encoding="utf-8"), re.M)
    assert m, "CUDA_ONLY is not set in the Makefile"
    return set(m.group(1).split())


def _venv() -> str:
    """Where the Dockerfile creates the virtual environment (the same in both flavours)."""
    found = {argv[3] for f in FLAVOURS for kind, argv in build_steps(f)
             if kind == "run" and argv[1:3] == ["-m", "venv"] and len(argv) == 4}
    assert len(found) == 1, found
    return found.pop()


# --------------------------------------------------------------------------------------------------
# the manifests


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


@cache
def kustomization() -> dict[str, Any]:
    (doc,) = _docs(CLUSTER / "kustomization.yaml")
    return doc


def conf_files() -> dict[str, Path]:
    """The ConfigMap fusionlog-conf: key -> source file (cluster/kustomization.yaml)."""
    (gen,) = kustomization()["configMapGenerator"]
    assert gen["name"] == "fusionlog-conf"
    return {k: CLUSTER / v for k, v in (f.split("=", 1) for f in gen["files"])}


@cache
def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes object under cluster/, by file (relative path)."""
    skip = {CLUSTER / "kustomization.yaml", *conf_files().values()}
    return {str(p.relative_to(CLUSTER)): _docs(p) for p in sorted(CLUSTER.rglob("*.yaml")) if p not in skip}


def objects(kind: str) -> list[dict[str, Any]]:
    return [d for docs in manifests().values() for d in docs if d["kind"] == kind]


def ray_specs() -> list[tuple[str, dict[str, Any]]]:
    out = [(f"RayCluster {c['metadata']['name']}", c["spec"]) for c in objects("RayCluster")]
    out += [(f"RayJob {j['metadata']['name']}", j["spec"]["rayClusterSpec"]) for j in objects("RayJob")]
    return out


def ray_pods() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, group spec, pod spec) of every head and worker group."""
    out = []
    for label, spec in ray_specs():
        out.append((f"{label} head", spec["headGroupSpec"], spec["headGroupSpec"]["template"]["spec"]))
        for g in spec["workerGroupSpecs"]:
            out.append((f"{label} {g['groupName']}", g, g["template"]["spec"]))
    return out


def spark(role: str) -> list[dict[str, Any]]:
    """The Deployments running Spark's ``master.Master`` or ``worker.Worker``."""
    return [d for d in objects("Deployment")
            if f"org.apache.spark.deploy.{role}" in d["spec"]["template"]["spec"]["containers"][0]["command"]]


def _deployment_pod(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return f"Deployment {d['metadata']['name']}", d["spec"]["template"]["spec"]


def all_pods() -> list[tuple[str, dict[str, Any]]]:
    return [(label, pod) for label, _, pod in ray_pods()] + [_deployment_pod(d) for d in objects("Deployment")]


def ray_containers() -> list[tuple[str, dict[str, Any]]]:
    """(label, container) of every container that runs Ray: the head and worker containers, KubeRay's autoscaler
    sidecar (its settings are ``autoscalerOptions``) and each RayJob's submitter (``submitterPodTemplate``)."""
    out = [(f"{label}/{c['name']}", c) for label, _, pod in ray_pods() for c in pod["containers"]]
    for label, spec in ray_specs():
        if spec.get("enableInTreeAutoscaling"):
            out.append((f"{label} autoscaler", spec.get("autoscalerOptions", {})))
    for job in objects("RayJob"):
        pod = job["spec"].get("submitterPodTemplate", {}).get("spec", {})
        out += [(f"RayJob {job['metadata']['name']} submitter/{c['name']}", c) for c in pod.get("containers", [])]
    return out


def _walk(node: Any) -> Any:
    """Every mapping and list inside a parsed YAML document."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _cpus(q: str | int | float) -> float:
    s = str(q)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


def _gib(size: str) -> float:
    """A Spark size ("8g", "512m") in GiB."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt])b?", size.lower())
    assert m, size
    return float(m.group(1)) * {"k": 2**-20, "m": 2**-10, "g": 1, "t": 2**10}[m.group(2)]


def _flavour_of(image: str) -> str:
    version = _pyproject()["project"]["version"]
    m = re.fullmatch(rf"(?:.+/)?fusionlog:{re.escape(version)}-(\w+)", image)
    assert m, f"{image} is not fusionlog:{version}-<flavour>"
    return m.group(1)


def _gpus(container: dict[str, Any]) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


# --------------------------------------------------------------------------------------------------
# tests: the Dockerfile


def test_dockerfile_builds_each_flavour_from_its_base() -> None:
    args, stages = dockerfile()
    assert args["FLAVOUR"] == "cpu"
    names = [s.name for s in stages if s.name]
    assert len(names) == len(set(names)), "duplicate stage names"
    cpu_base, cpu = chain("cpu")
    gpu_base, gpu = chain("gpu")
    assert re.fullmatch(r"python:3\.11-slim-bookworm", cpu_base), cpu_base  # Debian 12: it has openjdk-17
    assert gpu_base.startswith("nvidia/cuda:") and "ubuntu22.04" in gpu_base, gpu_base
    assert "cpu" in [s.name for s in cpu] and "gpu" not in [s.name for s in cpu]
    assert "gpu" in [s.name for s in gpu] and "cpu" not in [s.name for s in gpu]
    for flavour in FLAVOURS:
        runs = [argv for kind, argv in build_steps(flavour) if kind == "run"]
        apt = [a for argv in runs if argv[:1] == ["apt-get"] and "install" in argv for a in argv]
        assert "openjdk-17-jre-headless" in apt, f"{flavour}: no Java 17 (PySpark 4 needs it)"
        assert ["python3.11", "-m", "venv", _venv()] in runs, f"{flavour}: the venv is not Python 3.11"
        if flavour == "gpu":
            assert "python3.11" in apt
        env = env_of(flavour)
        assert env["PATH"].split(":")[0] == f"{_venv()}/bin"
        # KubeRay starts Ray in a login shell; Debian's /etc/profile resets PATH, /etc/profile.d/ puts the venv back
        profile = [ins.args for ins in instructions(flavour) if ins.cmd == "RUN" and "/etc/profile.d/" in ins.args]
        assert profile and f"{_venv()}/bin" in profile[0], f"{flavour}: the venv is not on login shells' PATH"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_dockerfile_installs_what_the_makefile_does(flavour: str) -> None:
    cuda_only = _makefile_cuda_only()
    from fusionlog.llm.check_install import CUDA_ONLY

    assert cuda_only == set(CUDA_ONLY) == {"torchvision", "torchaudio", "torchcodec", "triton"}
    steps = build_steps(flavour)
    torch = f"torch=={_pin('torch')}"
    assert torch == "torch==2.13.0"
    i_torch = next(k for k, (kind, reqs) in enumerate(steps) if kind == "install" and torch in reqs)
    local = [(k, _extras(r)[1]) for k, (kind, reqs) in enumerate(steps) if kind == "install"
             for r in reqs if _extras(r)[0] == "."]
    assert [e for _, e in local] == [{flavour, "model"}], f"{flavour}: the package is installed with {local}"
    i_pkg = local[0][0]
    assert i_torch < i_pkg, "torch must be installed before the package (the CPU build comes from its own index)"
    assert set(_pyproject()["project"]["optional-dependencies"]) >= {flavour, "model"}
    removed = [(k, set(names)) for k, (kind, names) in enumerate(steps) if kind == "uninstall"]
    check = [k for k, (kind, argv) in enumerate(steps) if kind == "run"
             and argv == ["python", "-m", "fusionlog.llm.check_install"]]
    if flavour == "cpu":
        assert [names for _, names in removed] == [cuda_only]
        assert i_pkg < removed[0][0] < check[0], "uninstall after the install, check after the uninstall"
        later = [kind for kind, _ in steps[removed[0][0] + 1:] if kind == "install"]
        assert not later, "a pip install after the uninstall can bring the CUDA-only wheels back"
        assert len(check) == 1
    else:  # the CUDA vLLM needs them, and check_install demands the CPU torch
        assert all(not names & cuda_only for _, names in removed), removed
        assert not check


def test_dockerfile_user_workdir_conf_and_model() -> None:
    for flavour in FLAVOURS:
        ins = instructions(flavour)
        user = [i.args for i in ins if i.cmd == "USER"]
        assert user and user[-1] not in ("root", "0"), f"{flavour}: runs as root"
        workdir = [i.args for i in ins if i.cmd == "WORKDIR"]
        assert workdir[-1] == "/app"
        copied = {src.rstrip("/"): dest.rstrip("/") for srcs, dest in copies(flavour) for src in srcs}
        assert copied["conf"] == "/app/conf" == env_of(flavour)["FUSIONLOG_CONF"]
        assert copied["jobs"] == "/app/jobs" and copied["fusionlog"] == "/app/fusionlog"
        assert copied["data"] == "/app/data", "the example experiments read data/ relative to /app"
        assert env_of(flavour)["HF_HUB_OFFLINE"] == "1"
        # the model: prepare.py run as a script into /models, unless PREPARE_MODEL=0
        script = copied["fusionlog/llm/prepare.py"]
        stage = next(s for s in chain(flavour)[1] if any(script in i.args for i in s.instrs if i.cmd == "RUN"))
        assert Instr("ARG", "PREPARE_MODEL=1") in stage.instrs
        run = next(i.args for i in stage.instrs if i.cmd == "RUN" and script in i.args)
        assert ["python", script, "/models"] in commands(run) and '"$PREPARE_MODEL" = 1' in run
        order = [i.cmd + " " + i.args for i in ins]
        first_code = next(k for k, x in enumerate(order) if x.startswith("COPY fusionlog/ "))
        assert any(script in x for x in order[:first_code]), "the model layer must not depend on the code"


def test_prepare_script_runs_alone(tmp_path: Path) -> None:
    """The Dockerfile runs fusionlog/llm/prepare.py outside the package: it must import nothing from it."""
    src = REPO / "fusionlog" / "llm" / "prepare.py"
    for node in ast.walk(ast.parse(src.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("fusionlog"), ast.unparse(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("fusionlog") for a in node.names), ast.unparse(node)
    script = tmp_path / "fusionlog-prepare.py"  # as in the image: alone, away from the package
    script.write_bytes(src.read_bytes())
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cache_dir" in out.stdout


def test_copied_paths_exist_and_are_not_ignored() -> None:
    patterns = [p.strip().lstrip("/") for p in (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    assert {"runs", ".venv"} <= set(patterns)

    def ignored(rel: str) -> bool:
        parts = PurePosixPath(rel).parts
        prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
        return any(fnmatch.fnmatch(p, pat.replace("**/", "*")) or fnmatch.fnmatch(p, pat)
                   for pat in patterns for p in prefixes)

    _, stages = dockerfile()
    sources = {src for s in stages for i in s.instrs if i.cmd == "COPY" and "--from" not in i.args
               for src in shlex.split(i.args)[:-1]}
    assert sources >= {"pyproject.toml", "README.md", "fusionlog/", "jobs/", "conf/", "data/"}
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not ignored(src.rstrip("/")), f"COPY {src}: excluded by Dockerfile.dockerignore"
    assert ignored("runs/demo") and ignored(".venv/bin") and ignored("fusionlog/__pycache__")


# --------------------------------------------------------------------------------------------------
# tests: the manifests


def test_every_yaml_file_parses_and_has_a_known_kind() -> None:
    k = kustomization()
    assert (k["apiVersion"], k["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    for res in k["resources"]:
        assert res in manifests(), f"kustomization resource {res} is not a manifest here"
    assert set(conf_files()) == {"ingest.yaml", "llm.yaml"}
    assert {"kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "kuberay/pvc.yaml"} <= set(manifests())
    for path, docs in manifests().items():
        assert docs, f"{path} is empty"
        for d in docs:
            assert (d.get("apiVersion"), d.get("kind")) in KINDS, f"{path}: {d.get('apiVersion')} {d.get('kind')}"
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"]["name"]), d["metadata"]["name"]
    assert len(objects("RayCluster")) == 1 and len(objects("RayJob")) >= 2


def test_images_are_the_dockerfile_flavours() -> None:
    _, stages = dockerfile()
    built = {f for f in FLAVOURS if f in {s.name for s in stages}}
    assert built == set(FLAVOURS)
    for label, pod in all_pods():
        for c in pod["containers"]:
            flavour = _flavour_of(c["image"])
            assert flavour in built, f"{label}: {c['image']} is no flavour of cluster/Dockerfile"
            assert (flavour == "gpu") == (_gpus(c) > 0), f"{label}: image {c['image']} with {_gpus(c)} GPUs"


def test_gpu_groups_request_gpus_and_match_the_llm_config() -> None:
    llm = load_llm(conf_files()["llm.yaml"])
    assert isinstance(llm, LLMConfig) and llm.backend == "serve" and llm.serve.accelerator == "gpu"
    for label, spec in ray_specs():
        gpu_groups = [g for g in spec["workerGroupSpecs"]
                      if _flavour_of(g["template"]["spec"]["containers"][0]["image"]) == "gpu"]
        assert gpu_groups, f"{label}: no GPU worker group"
        for g in gpu_groups:
            (c,) = [c for c in g["template"]["spec"]["containers"] if c["name"] == "ray-worker"]
            assert _gpus(c) >= llm.serve.tensor_parallel_size, f"{label}: fewer GPUs per pod than one replica needs"
            assert _cpus(c["resources"]["limits"]["cpu"]) >= llm.serve.cpus_per_replica
            resources = json.loads(json.loads(g["rayStartParams"]["resources"]))  # KubeRay's quoted JSON
            assert resources == {f"accelerator_type:{llm.serve.accelerator_type}": 1}, resources
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert _gpus(head) == 0


def test_head_declares_gcs_and_dashboard_ports() -> None:
    for label, spec in ray_specs():
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        ports = {p["containerPort"] for p in head["ports"]}
        assert {6379, 8265} <= ports, f"{label}: head ports {ports}"
        assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"


def test_ray_version_is_the_installed_one() -> None:
    import ray

    assert _pin("ray") == ray.__version__
    for label, spec in ray_specs():
        assert spec["rayVersion"] == ray.__version__, label


def test_every_pod_mounts_the_shared_runs_volume() -> None:
    (pvc,) = objects("PersistentVolumeClaim")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"], "run directories are written from several nodes"
    assert all_pods()
    for label, pod in all_pods():
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            runs = [m for m in c["volumeMounts"] if m["mountPath"] == "/runs"]
            assert runs, f"{label}/{c['name']}: /runs is not mounted"
            claim = volumes[runs[0]["name"]].get("persistentVolumeClaim", {}).get("claimName")
            assert claim == pvc["metadata"]["name"], f"{label}: /runs is {volumes[runs[0]['name']]}"
        assert pod.get("securityContext", {}).get("fsGroup") == 1000, f"{label}: /runs is not writable for uid 1000"


def test_pods_that_read_inputs_get_the_credentials() -> None:
    assert spark("worker.Worker"), "no Spark worker found"
    readers = [(label, pod) for label, _, pod in ray_pods()] + [_deployment_pod(d) for d in spark("worker.Worker")]
    for label, pod in readers:
        refs = [e["secretRef"] for e in pod["containers"][0].get("envFrom", []) if "secretRef" in e]
        assert {"name": SECRET, "optional": True} in refs, f"{label}: no {SECRET}"


def test_every_ray_container_authenticates_with_the_token_secret() -> None:
    """Ray 2.60 enables token authentication: every Ray process and client needs RAY_AUTH_MODE=token and the same
    RAY_AUTH_TOKEN, here from one Secret (cluster/README.md, "Authentication")."""
    containers = ray_containers()
    labels = [label for label, _ in containers]
    assert sum(" autoscaler" in x for x in labels) == len(ray_specs()), labels
    assert sum(" submitter/" in x for x in labels) == len(objects("RayJob")), labels
    for label, c in containers:
        env = c.get("env", [])
        names = [e["name"] for e in env]
        assert len(names) == len(set(names)), f"{label}: an env variable is set twice: {names}"
        by_name = {e["name"]: e for e in env}
        assert by_name.get("RAY_AUTH_MODE") == {"name": "RAY_AUTH_MODE", "value": "token"}, label
        token = by_name.get("RAY_AUTH_TOKEN")
        assert token is not None, f"{label}: no RAY_AUTH_TOKEN"
        assert "value" not in token, f"{label}: RAY_AUTH_TOKEN is a literal value"
        ref = token["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == TOKEN_SECRET, f"{label}: token from {ref}"
        assert ref.get("optional", False) is False, f"{label}: a cluster without the token Secret must not start"


def test_rayjob_submitters_run_ray_job_submit_with_the_token() -> None:
    """K8sJobMode: KubeRay runs `ray job submit` in the first container of submitterPodTemplate (it fills in the
    command when there is none); its default submitter pod would not get the token."""
    for job in objects("RayJob"):
        name = job["metadata"]["name"]
        assert job["spec"]["submissionMode"] == "K8sJobMode"
        pod = job["spec"]["submitterPodTemplate"]["spec"]
        assert pod["restartPolicy"] == "Never", name  # a Job's pod; KubeRay's default submitter does the same
        submitter = pod["containers"][0]
        assert "command" not in submitter and "args" not in submitter, f"{name}: KubeRay's command is replaced"
        assert _flavour_of(submitter["image"]) == "cpu", f"{name}: the submitter needs the image's `ray` CLI"
        assert pod["securityContext"]["runAsNonRoot"] is True, name


def test_no_manifest_holds_a_token() -> None:
    literal = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])")  # what `openssl rand -hex` makes
    texts = {str(p.relative_to(CLUSTER)): p.read_text(encoding="utf-8") for p in sorted(CLUSTER.rglob("*"))
             if p.is_file() and p.suffix in (".yaml", ".yml", ".md", ".json", ".env", "")}
    assert "kuberay/raycluster.yaml" in texts and "README.md" in texts
    for path, text in texts.items():
        assert not literal.search(text), f"{path}: {literal.search(text).group(0)[:8]}... looks like a token"
    for path, docs in manifests().items():
        for doc in docs:
            assert doc["kind"] != "Secret", f"{path}: a Secret in the repository (its value would be committed)"
            for node in _walk(doc):
                if isinstance(node, dict) and node.get("name", "").startswith("RAY_AUTH_TOKEN"):
                    assert "value" not in node, f"{path}: {node['name']} has a literal value"
                if isinstance(node, dict) and isinstance(node.get("runtimeEnvYAML"), str):
                    env = yaml.safe_load(node["runtimeEnvYAML"]).get("env_vars", {})
                    assert not [k for k in env if k.startswith("RAY_AUTH")], f"{path}: token in runtimeEnvYAML"


def test_token_secret_is_the_same_everywhere_and_in_the_readme() -> None:
    refs = {(n["valueFrom"]["secretKeyRef"]["name"], n["valueFrom"]["secretKeyRef"]["key"])
            for docs in manifests().values() for d in docs for n in _walk(d)
            if isinstance(n, dict) and n.get("name") == "RAY_AUTH_TOKEN"}
    assert refs == {TOKEN_SECRET}, refs
    name, key = TOKEN_SECRET
    readme = (CLUSTER / "README.md").read_text(encoding="utf-8")
    assert f"kubectl create secret generic {name} --from-literal={key}=" in readme
    assert f"kubectl get secret {name} -o jsonpath='{{.data.{key}}}' | base64 -d" in readme
    assert "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=" in readme
    for path in ("kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "kuberay/rayjob-backfill.yaml"):
        assert name in (CLUSTER / path).read_text(encoding="utf-8").split("apiVersion:")[0], f"{path}: header"


def test_conf_mounts_are_the_configmap_files() -> None:
    files = conf_files()
    for label, _, pod in ray_pods():
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = [m for m in pod["containers"][0]["volumeMounts"] if "configMap" in volumes[m["name"]]]
        assert {m["subPath"] for m in mounts} == set(files), label
        for m in mounts:
            assert volumes[m["name"]]["configMap"]["name"] == "fusionlog-conf"
            assert m["mountPath"] == f"{env_of('cpu')['FUSIONLOG_CONF']}/{m['subPath']}"
            assert (REPO / "conf" / m["subPath"]).is_file(), f"{m['subPath']} replaces no file of conf/"


def _job_command(job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The jobs module and the parsed CLI parameters of a RayJob's entrypoint (the real CLI parses them)."""
    import typer.main

    from fusionlog.cli import app

    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("jobs."), argv
    module = REPO / (argv[2].replace(".", "/") + ".py")
    assert module.is_file(), f"{argv[2]}: no {module.relative_to(REPO)}"
    calls = [n for n in ast.walk(ast.parse(module.read_text(encoding="utf-8")))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "app"
             and n.args and isinstance(n.args[0], ast.List) and isinstance(n.args[0].elts[0], ast.Constant)]
    assert len(calls) == 1, f"{module.name}: cannot tell which CLI command it runs"
    sub = calls[0].args[0].elts[0].value
    command = typer.main.get_command(app).commands[sub]
    return sub, command.make_context(sub, argv[3:]).params  # raises on an unknown option or a missing argument


def test_rayjobs_run_real_modules_on_real_experiments() -> None:
    (cluster,) = objects("RayCluster")
    jobs = {j["metadata"]["name"]: j for j in objects("RayJob")}
    runs: dict[str, str] = {}
    backfills = []
    for name, job in jobs.items():
        spec = job["spec"]
        assert spec["submissionMode"] == "K8sJobMode"
        assert spec["shutdownAfterJobFinishes"] is True
        assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
        assert isinstance(spec.get("activeDeadlineSeconds", 1), int) and spec.get("activeDeadlineSeconds", 1) > 0
        assert spec["rayClusterSpec"] == cluster["spec"], f"{name}: rayClusterSpec differs from raycluster.yaml"
        env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
        assert all(isinstance(v, str) for v in env.values()), "Ray takes only string env_vars"
        assert env["FUSIONLOG_CONF"] == env_of("cpu")["FUSIONLOG_CONF"] and env["HF_HUB_OFFLINE"] == "1"
        sub, params = _job_command(job)
        if sub == "run":
            exp_path = REPO / params["experiment"]  # relative to /app, where the image has conf/
            assert exp_path.is_file() and exp_path.parent == REPO / "conf" / "experiments", exp_path
            exp = load_experiment(exp_path)
            assert str(params["run"]) == f"/runs/{exp.name}"
            runs[exp.name] = str(params["run"])
            for ds in exp.datasets.values():  # the image has these under /app
                paths = [*ds.inputs, *ds.labels, *([ds.templates] if ds.templates else []),
                         *(s.split(":")[0] for s in ds.sequences)]
                for p in paths:
                    assert "://" in p or (REPO / p).exists(), f"{exp.name}: {p}"
        else:
            assert sub == "detect", sub
            backfills.append(params)
    assert runs and backfills
    for params in backfills:
        assert str(params["run"]) in runs.values(), "the backfill scores with a run no RayJob writes"
        assert str(params["out"]).startswith("/runs/") and params["inputs"]
        for uri in params["inputs"]:
            assert uri.split("://")[0] in ("s3", "gs") or uri.startswith("/runs/"), uri


def test_spark_example_validates_and_points_at_the_spark_service() -> None:
    path = conf_files()["ingest.yaml"]
    assert path == CLUSTER / "spark" / "ingest-cluster.yaml"
    cfg = load_ingest(path)
    assert isinstance(cfg, IngestConfig)
    m = re.fullmatch(r"spark://([a-z0-9-]+):(\d+)", cfg.spark.master)
    assert m, f"not a standalone master: {cfg.spark.master}"
    (svc,) = [s for s in objects("Service") if s["metadata"]["name"] == m.group(1)]
    assert int(m.group(2)) in {p["port"] for p in svc["spec"]["ports"]}
    assert cfg.spark.conf["spark.pyspark.python"] == f"{_venv()}/bin/python"
    workers, masters = spark("worker.Worker"), spark("master.Master")
    assert workers and len(masters) == 1 and len(workers) + len(masters) == len(objects("Deployment"))
    for d in workers + masters:
        argv = d["spec"]["template"]["spec"]["containers"][0]["command"]
        assert argv[0] == f"{_venv()}/bin/spark-class", argv[0]
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    for d in workers:
        argv = d["spec"]["template"]["spec"]["containers"][0]["command"]
        assert argv[-1] == cfg.spark.master
        opt = dict(zip(argv[2:-1:2], argv[3:-1:2], strict=True))
        assert _gib(opt["--memory"]) >= _gib(cfg.spark.conf["spark.executor.memory"]), "an executor does not fit"
        assert int(opt["--cores"]) >= int(cfg.spark.conf["spark.executor.cores"])
    selected = [d for d in objects("Deployment")
                if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert selected == masters, f"the Service {svc['metadata']['name']} does not select the Spark master alone"


def test_llm_config_uses_the_models_in_the_image() -> None:
    llm = load_llm(conf_files()["llm.yaml"])
    assert llm.cache_dir == "/models" or llm.cache_dir.startswith("/runs/"), "a path no Ray pod has"
    if llm.cache_dir == "/models":
        for f in FLAVOURS:
            prepared = [argv[-1] for kind, argv in build_steps(f) if kind == "run" and argv[:1] == ["python"]
                        and len(argv) == 3 and argv[1].endswith("prepare.py")]
            assert prepared == [llm.cache_dir], f"{f}: the image prepares the model into {prepared}"


def test_readme_names_files_that_exist() -> None:
    lines = (CLUSTER / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| file | what |") + 2  # the table of cluster/'s files, below its header row
    table = itertools.takewhile(lambda ln: ln.startswith("| `"), lines[start:])
    listed = [ln.split("`")[1] for ln in table]
    assert "Dockerfile" in listed and "kuberay/rayjob.yaml" in listed
    for name in listed:
        assert (CLUSTER / name).is_file(), f"cluster/README.md lists {name}, which does not exist"
