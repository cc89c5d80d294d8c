# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""serve_app's and serve_status's decisions, on the Serve REST API's answer recorded from a real Ray 2.60 head that
served two replicas of the demo model (tests/fixtures/serve/README.md). The live behaviour (deploy, in-place
scaling, a killed engine, autoscaling, delete) is tested in tests/integration/test_site_local_replicas.py.
"""

from __future__ import annotations

import copy
import io
import json
import os
import urllib.error

import pytest

from ansible_collections.llmops.ray_vllm.plugins.module_utils import _serve_app as serve

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "fixtures", "serve")
BASE_URL = "http://127.0.0.1:8265"
LLM = "LLMServer:smollm2-135m-instruct"


def recorded_instance():
    with open(os.path.join(FIXTURES, "applications-running-2-replicas.json"), encoding="utf-8") as fixture:
        return json.load(fixture)


def recorded(name):
    with open(os.path.join(FIXTURES, name), "rb") as fixture:
        return fixture.read()


class FakeDashboard:
    """An opener for ServeClient that answers like the dashboard from a recorded Serve instance and keeps what was
    PUT, uploaded or deleted."""

    def __init__(self, instance=None, packages=(), controllers="alive"):
        self.instance = instance if instance is not None else recorded_instance()
        self.packages = set(packages)
        self.controllers = controllers  # the State API's recorded answer: "alive", "none", or None (no State API)
        self.calls = []

    def __call__(self, url, method="GET", data=None, headers=None, **_kwargs):
        path = url[len(BASE_URL) :]
        self.calls.append((method, path))
        if path == serve.SERVE_CONTROLLERS_PATH:
            if self.controllers is None:
                raise urllib.error.HTTPError(url, 404, "Not Found", {}, io.BytesIO(b"404: Not Found"))
            return Answer(recorded(f"state-api-serve-controllers-{self.controllers}.json"))
        if path.startswith(serve.PACKAGE_PATH):
            name = path[len(serve.PACKAGE_PATH) :]
            if method == "PUT":
                self.packages.add(name)
            elif name not in self.packages:
                raise urllib.error.HTTPError(url, 404, "Not Found", {}, io.BytesIO(b"Package does not exist"))
            return Answer(b"")
        if method == "PUT":
            self.put = json.loads(data)
        return Answer(json.dumps(self.instance).encode() if method == "GET" else b"")


class Answer:
    def __init__(self, body):
        self.body = body

    def getcode(self):
        return 200

    def read(self):
        return self.body


def client(dashboard):
    return serve.ServeClient(BASE_URL, opener=dashboard)


def deployed_spec(instance=None):
    config = copy.deepcopy((instance or recorded_instance())["applications"]["llm"]["deployed_app_config"])
    return config


def test_the_same_config_with_its_package_uploaded_is_not_deployed_again():
    uri = deployed_spec()["runtime_env"]["working_dir"]
    dashboard = FakeDashboard(packages=[uri.rsplit("/", 1)[1]])
    package = (uri, b"zip")
    result = serve.ensure_present(client(dashboard), deployed_spec(), {"http_options": {"port": 8000}}, package)
    assert result["changed"] is False
    assert [method for method, _path in dashboard.calls] == ["GET", "GET"]


def test_a_new_replica_count_is_put_with_the_running_http_options():
    spec = deployed_spec()
    spec["args"]["llm_configs"][0]["deployment_config"]["num_replicas"] = 1
    dashboard = FakeDashboard(packages=[spec["runtime_env"]["working_dir"].rsplit("/", 1)[1]])
    result = serve.ensure_present(client(dashboard), spec, {"http_options": {"host": "127.0.0.1", "port": 8000}})
    assert result["changed"] is True
    assert result["diff"]["before"]["args"]["llm_configs"][0]["deployment_config"]["num_replicas"] == 2
    assert dashboard.put["applications"] == [serve.application_config(spec)]
    assert dashboard.put["http_options"] == {"host": "127.0.0.1", "port": 8000}
    assert dashboard.put["proxy_location"] == "HeadOnly"


def test_check_mode_uploads_and_deploys_nothing():
    spec = deployed_spec()
    spec["route_prefix"] = "/other"
    dashboard = FakeDashboard()
    package = ("gcs://_ray_pkg_new.zip", b"zip")
    result = serve.ensure_present(client(dashboard), spec, {}, package, check_mode=True)
    assert result["changed"] is True
    assert all(method == "GET" for method, _path in dashboard.calls)


def test_a_missing_package_is_uploaded_before_the_config():
    spec = deployed_spec()
    dashboard = FakeDashboard()
    serve.ensure_present(client(dashboard), spec, {}, ("gcs://_ray_pkg_new.zip", b"zip"))
    methods = [f"{method} {path}" for method, path in dashboard.calls]
    assert methods.index("PUT /api/packages/gcs/_ray_pkg_new.zip") < methods.index("PUT /api/serve/applications/")


def test_other_applications_are_put_back_unchanged():
    instance = recorded_instance()
    other = copy.deepcopy(instance["applications"]["llm"])
    other["deployed_app_config"]["name"] = "other"
    other["deployed_app_config"]["route_prefix"] = "/other"
    instance["applications"]["other"] = other
    spec = deployed_spec(instance)
    spec["args"] = {}
    dashboard = FakeDashboard(instance)
    serve.ensure_present(client(dashboard), spec, {})
    assert [app["name"] for app in dashboard.put["applications"]] == ["other", "llm"]
    assert dashboard.put["applications"][0] == other["deployed_app_config"]


def test_a_running_serve_on_another_port_is_refused_naming_both():
    with pytest.raises(serve.ServeAppError, match=r"http_options port=8000.*port=9999 was asked"):
        serve.ensure_present(client(FakeDashboard()), deployed_spec(), {"http_options": {"port": 9999}})


def test_deleting_the_last_application_shuts_serve_down_and_waits():
    dashboard = FakeDashboard()
    looks = iter([recorded_instance(), {"applications": {}}])
    dashboard_get = dashboard.__call__

    def answer(url, method="GET", **kwargs):
        if method == "GET" and url.endswith(serve.SERVE_PATH):
            dashboard.instance = next(looks, {"applications": {}})
        return dashboard_get(url, method=method, **kwargs)

    result = serve.ensure_absent(serve.ServeClient(BASE_URL, opener=answer), "llm", wait={"timeout": 5, "interval": 0})
    assert result["changed"] is True
    assert ("DELETE", serve.SERVE_PATH) in dashboard.calls


def test_deleting_an_absent_application_changes_nothing():
    result = serve.ensure_absent(client(FakeDashboard({"applications": {}})), "llm")
    assert result == {"changed": False, "diff": {"before": {}, "after": {}}}


def test_without_a_serve_controller_nothing_is_deleted_and_the_serve_api_is_not_asked():
    dashboard = FakeDashboard(controllers="none")
    result = serve.ensure_absent(client(dashboard), "llm")
    assert result == {"changed": False, "diff": {"before": {}, "after": {}}}
    assert dashboard.calls == [("GET", serve.SERVE_CONTROLLERS_PATH)]


def test_a_live_serve_controller_lets_the_serve_api_decide():
    dashboard = FakeDashboard(controllers="alive")
    result = serve.ensure_absent(client(dashboard), "llm", check_mode=True)
    assert result["changed"] is True
    assert dashboard.calls == [("GET", serve.SERVE_CONTROLLERS_PATH), ("GET", serve.SERVE_PATH)]


def test_a_dashboard_without_the_state_api_lets_the_serve_api_decide():
    dashboard = FakeDashboard(controllers=None)
    result = serve.ensure_absent(client(dashboard), "llm", check_mode=True)
    assert result["changed"] is True and ("GET", serve.SERVE_PATH) in dashboard.calls


def test_the_recorded_instance_is_ready_with_its_two_replicas():
    assert serve.serve_app_readiness(recorded_instance(), "llm", {LLM: 2}) == ("ready", [])
    summary = serve.application_summary(recorded_instance(), "llm")
    assert summary["deployments"][LLM]["running"] == 2
    assert summary["deployments"][LLM]["states"] == {"RUNNING": 2}


def test_fewer_replicas_than_expected_is_scaling_and_says_which():
    status, messages = serve.serve_app_readiness(recorded_instance(), "llm", {LLM: 3})
    assert status == "scaling"
    assert f"Deployment {LLM} runs 2 replica(s); 3 are expected." in messages


def test_an_unknown_application_is_not_deployed_naming_the_ones_there():
    status, messages = serve.serve_app_readiness(recorded_instance(), "chat", None)
    assert status == "not_deployed"
    assert messages == ["Serve has no application 'chat' (applications: llm)."]


def test_replicas_must_be_whole_numbers():
    assert serve.checked_replicas({LLM: "2"}) == {LLM: 2}
    with pytest.raises(serve.ServeAppError, match=r"replicas\['LLMServer:smollm2-135m-instruct'\]='two'"):
        serve.checked_replicas({LLM: "two"})


def test_equal_files_give_an_equal_package():
    files = {"b.py": b"print(2)\n", "a.py": b"print(1)\n"}
    first, second = serve.package_zip(files), serve.package_zip(dict(reversed(list(files.items()))))
    assert first == second
    assert serve.package_uri(first) == serve.package_uri(second)
    assert serve.package_uri(first) != serve.package_uri(serve.package_zip({"a.py": b"print(3)\n"}))
    assert serve.package_uri(first).startswith("gcs://_ray_pkg_") and serve.package_uri(first).endswith(".zip")


def test_a_config_serve_echoed_with_floats_and_without_nones_is_the_same():
    # Serve 2.60 echoes health_check_period_s: 5 as 5.0 and leaves out autoscaling_config: None.
    asked = {"name": LLM, "num_replicas": 2, "autoscaling_config": None, "health_check_period_s": 5}
    desired = {"deployments": [asked]}
    echoed = {"deployments": [{"name": LLM, "num_replicas": 2, "health_check_period_s": 5.0}]}
    assert serve.same_config(echoed, desired)
    assert not serve.same_config(echoed, {"deployments": [{"name": LLM, "num_replicas": 1}]})
    assert not serve.same_config({"deployments": [{"name": LLM, "autoscaling_config": {"max_replicas": 2}}]}, desired)
