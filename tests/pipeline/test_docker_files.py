"""The Docker deployment files agree with the repository and with what the service reads.

No Docker needed (`make docker-test` runs the images for real): the Dockerfiles, compose files,
nginx config and Kubernetes manifest are parsed and compared with the pipeline configs, the
environment variables of serving.pipeline.env_overrides, the health-check module and the files on disk,
so a renamed port, variable, config or module fails here first. Also the unit tests of
serving.pipeline.env_overrides and serving.pipeline.healthcheck.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.pipeline import env_overrides, healthcheck
from serving.pipeline.openapi import LIVE_PATH
from serving.pipeline.env_overrides import EnvOverrideError, apply_env_overrides
from serving.core.preprocess.decode_limits import DecodeLimits
from serving.pipeline.protocol import max_request_bytes

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {"cpu": REPO / "docker" / "Dockerfile.cpu", "gpu": REPO / "docker" / "Dockerfile.gpu"}
CONFIGS = {"cpu": REPO / "pipeline_config" / "config.yml",
           "gpu": REPO / "pipeline_config" / "config.gpu.yml"}
COMPOSE_SERVICES = {"cpu": "pptsm", "gpu": "pptsm-gpu"}
HEALTHCHECK_COMMAND = ["python", "-m", "serving.pipeline.healthcheck"]
ENTRYPOINT = ["python", "-m", "serving.pipeline.service"]
MODEL_MOUNT = "/app/model_repo"
CPU_BASE_IMAGE = "python:3.11-slim-bookworm"


# ---- parsing helpers ------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, rest = pending.partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
            pending = ""
    return instructions


def args_of(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for name, rest in instructions if name == keyword]


def env_of(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for rest in args_of(instructions, "ENV"):
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


class ComposeLoader(yaml.SafeLoader):
    """PyYAML plus Compose's `!reset` / `!override` merge tags (kept as their values)."""


def _tagged_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, _tagged_value)


def load_compose(name: str) -> dict[str, Any]:
    return yaml.load((REPO / name).read_text(), Loader=ComposeLoader)


def with_defaults(text: str) -> str:
    """Compose interpolation with no variable set: `${NAME:-default}` becomes `default`."""
    def default(match: re.Match[str]) -> str:
        if match.group(2) is None:
            raise AssertionError(f"{match.group(0)}: a variable without a default")
        return match.group(2)
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", default, str(text))


def config(kind: str) -> dict[str, Any]:
    return yaml.safe_load(CONFIGS[kind].read_text())


def served_ports(conf: dict[str, Any]) -> set[int]:
    return {conf["http_port"], conf["rpc_port"], conf["dag"]["prometheus_port"]}


def compose_service(kind: str) -> dict[str, Any]:
    return load_compose("docker-compose.yml")["services"][COMPOSE_SERVICES[kind]]


def k8s_documents() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((REPO / "docker" / "k8s" / "pptsm.yaml").read_text())
    return {doc["kind"]: doc for doc in docs}


def dockerignore_allowed() -> set[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return {line[1:].rstrip("/") for line in lines if line.startswith("!")}


# ---- Dockerfiles ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", DOCKERFILES)
def test_every_copy_source_exists_and_is_in_the_build_context(kind: str) -> None:
    allowed = dockerignore_allowed()
    sources = [source for rest in args_of(dockerfile_instructions(DOCKERFILES[kind]), "COPY")
               for source in rest.split()[:-1]]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_host_data_out() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines, ".dockerignore must exclude everything not allowed explicitly"
    for private in ("data", ".venv", "output", "model_repo", "train", "tests"):
        assert not any(allowed == private or allowed.startswith(private + "/")
                       for allowed in dockerignore_allowed()), private


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_dependencies_install_with_the_project_script_before_the_code_is_copied(kind: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[kind])
    install = [i for i, (name, rest) in enumerate(instructions)
               if name == "RUN" and "requirements/install.sh" in rest]
    code = [i for i, (name, rest) in enumerate(instructions)
            if name == "COPY" and rest.startswith("serving/")]
    assert len(install) == 1 and len(code) == 1
    assert install[0] < code[0], "a code change would reinstall the dependencies"
    assert instructions[install[0]][1].endswith(" gpu") == (kind == "gpu")


def test_gpu_wheel_matches_the_cpu_wheel_version() -> None:
    base = (REPO / "requirements" / "base.txt").read_text()
    gpu = (REPO / "requirements" / "gpu.txt").read_text()
    cpu_version = re.search(r"^paddlepaddle==(\S+)$", base, re.M).group(1)
    assert re.search(r"^paddlepaddle-gpu==(\S+)$", gpu, re.M).group(1) == cpu_version


def test_cpu_base_image_is_the_one_the_stand_in_is_built_as() -> None:
    assert args_of(dockerfile_instructions(DOCKERFILES["cpu"]), "FROM") == [CPU_BASE_IMAGE]
    assert f'PPTSM_BASE_IMAGE:-{CPU_BASE_IMAGE}' in (REPO / "docker" / "engine.sh").read_text()


def test_gpu_base_image_has_an_exact_tag() -> None:
    (base,) = args_of(dockerfile_instructions(DOCKERFILES["gpu"]), "FROM")
    assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", base) and "latest" not in base


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_exposed_ports_are_the_configs_ports(kind: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[kind])
    env = env_of(instructions)
    assert (REPO / env["PPTSM_CONFIG"]) == CONFIGS[kind]
    exposed = {int(port) for rest in args_of(instructions, "EXPOSE") for port in rest.split()}
    assert exposed == served_ports(config(kind))


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_entrypoint_healthcheck_user_and_environment(kind: str) -> None:
    instructions = dockerfile_instructions(DOCKERFILES[kind])
    assert [yaml.safe_load(rest) for rest in args_of(instructions, "ENTRYPOINT")] == [ENTRYPOINT]
    (health,) = args_of(instructions, "HEALTHCHECK")
    assert yaml.safe_load(health.split(" CMD ", 1)[1]) == HEALTHCHECK_COMMAND
    (user,) = args_of(instructions, "USER")
    assert user.isdigit() and int(user) != 0
    env = env_of(instructions)
    assert {name for name in env if name.startswith("PPTSM_")} <= set(env_overrides.ENV_NAMES)
    assert env["PPTSM_MODEL_DIR"].startswith(MODEL_MOUNT + "/")


def test_health_check_and_entry_point_modules_exist() -> None:
    for command in (HEALTHCHECK_COMMAND, ENTRYPOINT):
        assert (REPO / (command[2].replace(".", "/") + ".py")).is_file()


# ---- docker-compose.yml ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", COMPOSE_SERVICES)
def test_compose_service_builds_its_dockerfile_and_mounts_the_models_read_only(kind: str) -> None:
    service = compose_service(kind)
    assert REPO / service["build"]["dockerfile"] == DOCKERFILES[kind]
    (volume,) = [volume for volume in service["volumes"] if volume["target"] == MODEL_MOUNT]
    assert volume["read_only"] is True
    assert with_defaults(volume["source"]) == "./model_repo"
    assert with_defaults(service["environment"]["PPTSM_MODEL_DIR"]).startswith(MODEL_MOUNT + "/")
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("kind", COMPOSE_SERVICES)
def test_compose_environment_is_what_the_service_reads(kind: str) -> None:
    environment = compose_service(kind)["environment"]
    assert set(environment) <= set(env_overrides.ENV_NAMES)
    for name in ("PPTSM_CPU_THREADS", "PPTSM_BATCH_SIZE", "PPTSM_PRECISION", "PPTSM_HTTP_PORT",
                 "PPTSM_RPC_PORT"):
        # Passed only when set: unset leaves the pipeline config's value.
        assert with_defaults(environment[name]) == "", name


@pytest.mark.parametrize("kind", COMPOSE_SERVICES)
def test_compose_ports_lead_to_the_configs_ports(kind: str) -> None:
    ports = [with_defaults(mapping) for mapping in compose_service(kind)["ports"]]
    published = {int(p.split(":")[0]) for p in ports}
    in_container = {int(p.split(":")[1]) for p in ports}
    assert in_container == served_ports(config(kind)) == published


@pytest.mark.parametrize("kind", COMPOSE_SERVICES)
def test_compose_health_check_limits_and_shutdown(kind: str) -> None:
    service = compose_service(kind)
    assert service["healthcheck"]["test"] == ["CMD", *HEALTHCHECK_COMMAND]
    assert service["deploy"]["resources"]["limits"]["memory"]
    grace = float(service["stop_grace_period"].rstrip("s"))
    assert grace > config(kind)["shutdown_grace_s"], "Docker would kill requests in flight"
    assert service["init"] is True


def test_cpu_service_is_the_default_and_the_gpu_one_reserves_a_gpu() -> None:
    assert "profiles" not in compose_service("cpu")
    gpu = compose_service("gpu")
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    limits = compose_service("cpu")["deploy"]["resources"]["limits"]
    threads = config("cpu")["op"]["pptsm"]["local_service_conf"]["thread_num"]
    assert float(with_defaults(limits["cpus"])) >= threads


# ---- scale-out: docker-compose.scale.yml + nginx.conf ---------------------------------------

def test_scale_out_replicates_the_service_behind_nginx() -> None:
    scale = load_compose("docker-compose.scale.yml")["services"]
    assert scale["pptsm"]["ports"] == [], "replicas must not publish (colliding) ports"
    assert int(with_defaults(scale["pptsm"]["deploy"]["replicas"])) >= 2
    (mount,) = scale["lb"]["volumes"]
    assert REPO / mount["source"] == REPO / "docker" / "nginx.conf" and mount["read_only"]
    assert scale["lb"]["depends_on"]["pptsm"]["condition"] == "service_healthy"
    published = {int(with_defaults(p).split(":")[1]) for p in scale["lb"]["ports"]}
    conf = config("cpu")
    assert published == {conf["http_port"], conf["rpc_port"]}


def test_nginx_forwards_rest_and_grpc_to_the_service_ports() -> None:
    text = (REPO / "docker" / "nginx.conf").read_text()
    conf = config("cpu")
    upstreams = dict(re.findall(r"upstream (\w+) \{\s*server pptsm:(\d+);", text))
    assert upstreams == {"pptsm_http": str(conf["http_port"]), "pptsm_grpc": str(conf["rpc_port"])}
    assert f"listen {conf['http_port']};" in text and f"listen {conf['rpc_port']} http2;" in text
    assert "proxy_pass http://pptsm_http;" in text and "grpc_pass grpc://pptsm_grpc;" in text


def test_nginx_accepts_the_largest_request_the_service_accepts() -> None:
    text = (REPO / "docker" / "nginx.conf").read_text()
    megabytes = int(re.search(r"client_max_body_size (\d+)m;", text).group(1))
    largest = max_request_bytes(DecodeLimits(**config("cpu")["request_limits"]))
    assert megabytes * 2**20 >= largest + 1024  # + the JSON envelope around the values


# ---- Kubernetes -----------------------------------------------------------------------------

def test_kubernetes_deployment_matches_the_image_and_config() -> None:
    docs = k8s_documents()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {p["containerPort"] for p in container["ports"]} == served_ports(config("cpu"))
    probes = {probe: container[probe]["httpGet"]
              for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {probe: (get["path"], get["port"]) for probe, get in probes.items()} == {
        "startupProbe": (LIVE_PATH, "http"), "livenessProbe": (LIVE_PATH, "http"),
        "readinessProbe": (healthcheck.READY_PATH, "http")}
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["http"] == \
        config("cpu")["http_port"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert set(env) <= set(env_overrides.ENV_NAMES)
    assert env["PPTSM_MODEL_DIR"].startswith(MODEL_MOUNT + "/")
    assert int(env["PPTSM_CPU_THREADS"]) <= int(container["resources"]["requests"]["cpu"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[MODEL_MOUNT]["readOnly"] is True
    user = args_of(dockerfile_instructions(DOCKERFILES["cpu"]), "USER")
    assert [str(pod["securityContext"]["runAsUser"])] == user
    assert pod["terminationGracePeriodSeconds"] > config("cpu")["shutdown_grace_s"]
    service_ports = {p["port"] for p in docs["Service"]["spec"]["ports"]}
    assert service_ports == served_ports(config("cpu"))


def test_kubernetes_pod_is_hardened_and_drains_before_it_stops() -> None:
    pod = k8s_documents()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    empty_dirs = [volume for volume in pod["volumes"] if "emptyDir" in volume]
    assert empty_dirs and all(volume["emptyDir"].get("sizeLimit") for volume in empty_dirs)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and int(command[1]) >= 2
    # SIGTERM comes after preStop; the grace period covers both, then the service's own grace.
    pause_s = int(command[1])
    assert pod["terminationGracePeriodSeconds"] > pause_s + config("cpu")["shutdown_grace_s"]


# ---- serving.pipeline.env_overrides ------------------------------------------------------------------

def test_overrides_reach_the_keys_the_service_reads() -> None:
    conf = config("cpu")
    result = apply_env_overrides(conf, {
        "PPTSM_HTTP_PORT": "8080", "PPTSM_RPC_PORT": " 9000 ", "PPTSM_CPU_THREADS": "6",
        "PPTSM_BATCH_SIZE": "2", "PPTSM_PRECISION": "BF16"})
    model_op = result["op"]["pptsm"]
    assert (result["http_port"], result["rpc_port"]) == (8080, 9000)
    assert model_op["batch_size"] == 2
    assert model_op["local_service_conf"]["thread_num"] == 6
    assert model_op["local_service_conf"]["precision"] == "bf16"
    assert conf == config("cpu"), "the input config must not be changed"


def test_unset_and_empty_variables_change_nothing() -> None:
    conf = config("cpu")
    assert apply_env_overrides(conf, {}) == conf
    assert apply_env_overrides(conf, {name: "" for name in env_overrides.ENV_NAMES}) == conf


@pytest.mark.parametrize("name, value, message", [
    ("PPTSM_HTTP_PORT", "http", "PPTSM_HTTP_PORT: a port from 1 to 65535, got 'http'"),
    ("PPTSM_RPC_PORT", "70000", "PPTSM_RPC_PORT: a port from 1 to 65535, got 70000"),
    ("PPTSM_CPU_THREADS", "0", "PPTSM_CPU_THREADS: a thread count from 1 to 256, got 0"),
    ("PPTSM_BATCH_SIZE", "2.5", "PPTSM_BATCH_SIZE: a batch size from 1 to 4096, got '2.5'"),
    ("PPTSM_BATCH_SIZE", "9", "PPTSM_BATCH_SIZE: 9 is more than worker_num (8)"),
    ("PPTSM_PRECISION", "fp64", "PPTSM_PRECISION: one of fp32, fp16, bf16, int8, auto, got 'fp64'"),
    ("PPTSM_ENGINE", "tensorflow", "PPTSM_ENGINE: one of paddle, openvino, auto, got 'tensorflow'"),
])
def test_bad_values_are_refused_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(EnvOverrideError, match=re.escape(message)):
        apply_env_overrides(config("cpu"), {name: value})


def test_model_op_settings_need_the_model_op() -> None:
    with pytest.raises(EnvOverrideError, match=r"op\.pptsm: missing"):
        apply_env_overrides({"http_port": 1}, {"PPTSM_CPU_THREADS": "2"})


def test_model_dir_and_config_resolution() -> None:
    env = {"PPTSM_MODEL_DIR": "/models/a", "PPTSM_CONFIG": "conf.yml"}
    assert env_overrides.resolve_model_dir(Path("cli"), env) == Path("cli")
    assert env_overrides.resolve_model_dir(None, env) == Path("/models/a")
    with pytest.raises(EnvOverrideError, match="give --model-dir or set PPTSM_MODEL_DIR"):
        env_overrides.resolve_model_dir(None, {})
    assert env_overrides.resolve_config(Path("cli.yml"), env) == Path("cli.yml")
    assert env_overrides.resolve_config(None, env) == Path("conf.yml")
    assert env_overrides.resolve_config(None, {}) == env_overrides.DEFAULT_CONFIG
    assert env_overrides.describe({"PPTSM_BATCH_SIZE": "2", "HOME": "/"}) == "PPTSM_BATCH_SIZE=2"


def test_the_config_env_names_are_the_ones_documented() -> None:
    documented = set(re.findall(r"\| (PPTSM_\w+) \|", env_overrides.__doc__))
    assert documented == set(env_overrides.ENV_NAMES)


# ---- serving.pipeline.healthcheck --------------------------------------------------------------------

def test_health_check_asks_the_port_the_service_uses(monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({**config("cpu"), "http_port": 18555}))
    monkeypatch.setenv("PPTSM_CONFIG", str(path))
    monkeypatch.delenv("PPTSM_HTTP_PORT", raising=False)
    assert healthcheck.http_port() == 18555
    monkeypatch.setenv("PPTSM_HTTP_PORT", "18777")
    assert healthcheck.http_port() == 18777


def test_health_check_fails_when_nothing_answers(monkeypatch, capsys) -> None:
    from serving.tools.launcher import free_port

    monkeypatch.setenv("PPTSM_HTTP_PORT", str(free_port()))
    monkeypatch.delenv("PPTSM_CONFIG", raising=False)
    assert healthcheck.main() == 1
    assert "not ready on http port" in capsys.readouterr().err


# ---- serving.pipeline.service with the environment ---------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    from tests.service_client import tiny_model_dir

    return tiny_model_dir(tmp_path_factory, calibrate_bn)


def test_service_config_takes_the_environment_and_the_command_line_wins(model_dir: Path) -> None:
    from serving.core.metadata import load_meta
    from serving.pipeline.service import load_service_config

    environ = {"PPTSM_HTTP_PORT": "8080", "PPTSM_RPC_PORT": "9000", "PPTSM_CPU_THREADS": "1",
               "PPTSM_BATCH_SIZE": "2", "PPTSM_ENGINE": "paddle", "PPTSM_PRECISION": "fp32"}
    loaded = load_service_config(CONFIGS["cpu"], http_port=8081, rpc_port=None,
                                 meta=load_meta(model_dir), environ=environ)
    assert (loaded.serving["http_port"], loaded.serving["rpc_port"]) == (8081, 9000)
    assert loaded.predictor.cpu_threads == 1
    assert (loaded.predictor.engine, loaded.predictor.precision) == ("paddle", "fp32")
    assert loaded.serving["op"]["pptsm"]["batch_size"] == 2


def test_service_refuses_a_bad_variable_before_serving(model_dir: Path, monkeypatch,
                                                       capsys) -> None:
    from serving.pipeline import service

    monkeypatch.setenv("PPTSM_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("PPTSM_CPU_THREADS", "many")
    assert service.main([]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: PPTSM_CPU_THREADS: a thread count from 1 to 256, got 'many'")
