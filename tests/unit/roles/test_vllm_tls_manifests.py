"""vllm_serve with vllm_serve_tls_enabled on Kubernetes, rendered into the manifests the role applies.

Rendered with Ansible's own templating from the role's defaults, vars, tasks/settings.yml and templates
(test_cpu_plan_manifests.render), so what is checked is what the role would send to the API server.
"""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.llmops.ray_vllm.tests.unit.roles.test_cpu_plan_manifests import render

BASE = {
    "vllm_serve_platform": "kubernetes",
    "vllm_serve_model_path": "/models/SmolLM2-135M-Instruct",
    "vllm_serve_served_model_name": "smollm2-135m-instruct",
    "vllm_serve_device": "cpu",
    "_vllm_serve_api_key": "not-a-real-key",
    "vllm_serve_ingress_host": "llm.example.com",
}
TLS = dict(BASE, vllm_serve_tls_enabled=True, vllm_serve_tls_secret="llm-vllm-tls")


def manifest(template, variables):
    return yaml.safe_load(render("vllm_serve", template, "_vllm_serve_settings", variables))


def test_the_driver_mounts_the_secret_and_serves_https():
    spec = manifest("deployment.yaml.j2", TLS)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    tls_volume = next(volume for volume in spec["volumes"] if volume["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == "llm-vllm-tls"
    assert {item["key"] for item in tls_volume["secret"]["items"]} == {"tls.crt", "tls.key"}
    mount = next(mount for mount in container["volumeMounts"] if mount["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": "/etc/llmops/vllm-tls", "readOnly": True}
    server = container["command"][2].rsplit("\nexec ", 1)[1]
    for part in (
        "--ssl-certfile /etc/llmops/vllm-tls/tls.crt",
        "--ssl-keyfile /etc/llmops/vllm-tls/tls.key",
        "--enable-ssl-refresh",
    ):
        assert part in server, part
    assert container["ports"][0]["name"] == "https"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "https", "scheme": "HTTPS"}, probe


def test_the_service_and_ingress_name_the_https_port():
    service = manifest("service.yaml.j2", TLS)
    assert service["spec"]["ports"] == [
        {"name": "https", "appProtocol": "https", "port": 8000, "targetPort": "https", "protocol": "TCP"}
    ]
    ingress = manifest("ingress.yaml.j2", TLS)
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "https"}


def test_without_tls_nothing_changes():
    spec = manifest("deployment.yaml.j2", BASE)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert "--ssl-certfile" not in container["command"][2]
    assert all(volume["name"] != "tls" for volume in spec["volumes"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert manifest("service.yaml.j2", BASE)["spec"]["ports"][0]["name"] == "http"


def test_a_serve_llm_plan_with_tls_is_refused_by_name():
    serve_plan = {"device": "CPU", "vllm_args": {}, "serve": {"engine": "serve_llm"}, "replicas": 2}
    with pytest.raises(AssertionError) as refused:
        manifest("service.yaml.j2", dict(TLS, vllm_serve_plan=serve_plan))
    message = str(refused.value)
    assert "vllm_serve_tls_enabled=true is only supported for one vLLM engine" in message
    assert "vllm_serve_ingress_tls_secret" in message
