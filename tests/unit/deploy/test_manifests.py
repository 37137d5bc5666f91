"""The deployment files parse and say what the operations docs promise."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def test_kubernetes_manifests_validate_against_the_schema() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "renkei.yaml").read_text()))
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Job", "ConfigMap"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    api = next(d for d in docs if d["kind"] == "Deployment")
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_compose_has_two_replicas_behind_tls_proxy() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "api-1", "api-2", "nginx", "migrate"} <= services.keys()
    nginx_conf = (DEPLOY / "nginx" / "renkei.conf").read_text()
    assert "ssl_protocols TLSv1.3;" in nginx_conf
    assert "ssl_verify_client" in nginx_conf


def test_container_image_runs_as_non_root_with_health_check() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "USER renkei" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "AS build" in dockerfile  # multi-stage


def test_proxy_routes_websockets_with_every_header() -> None:
    """``location /ws`` upgrades the connection and, since a location that sets any
    proxy_set_header inherits none, repeats the forwarding headers itself."""
    for conf in (
        (DEPLOY / "nginx" / "renkei.conf").read_text(),
        (DEPLOY / "local" / "renkei-local.sh").read_text(),
    ):
        block = conf.split("location /ws {", 1)[1].split("}", 1)[0]
        for header in ("Upgrade", "Connection", "Host", "X-Forwarded-For", "X-Request-Id"):
            assert f"proxy_set_header {header} " in block, header


def test_replicas_fan_out_through_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in ("api-1", "api-2"):
        assert compose["services"][name]["environment"]["RENKEI_REDIS_URL"].startswith("redis://")
    assert "RENKEI_REDIS_URL" in (DEPLOY / "local" / "renkei-local.sh").read_text()
