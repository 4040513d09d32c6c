"""The Kubernetes controller against a fake API server speaking the apps/v1 wire contract.

No real API server can run on these machines (no registry package ships one), so this module
serves the documented apps/v1 (and autoscaling/v2, core/v1 pods) HTTP contract itself: GET
and strategic-merge PATCH of a Deployment (containers merged by name, `metadata.generation`
bumped when the pod template or replicas change), the status fields `kubectl rollout status`
reads, a `Progressing` condition with reason `ProgressDeadlineExceeded` for a template whose
pods never become ready, pods with restart counts, HPA create and merge-patch. The official
`kubernetes` client talks to it over HTTP exactly as it would to a cluster.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from probes.agent.controller import ApplyError, ControllerTask
from probes.agent.controller_kubernetes import (
    KubernetesController,
    RolloutWaitError,
    rollout_status,
)
from probes.agent.desired import Desired, NodeConfig, Observed

NS, NAME, CONTAINER = "inference", "llama", "vllm"
BASE = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--port", "8000"]
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}"
HPAS = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers"


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Strategic merge as the API server does it for these fields: maps recursively, the
    `containers` list by `name`, null deletes, other lists replaced."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif key == "containers" and isinstance(value, list):
            by_name = {c["name"]: c for c in target.setdefault(key, [])}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    target[key].append(item)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeCluster:
    """One Deployment whose rollout advances one step per GET (as its controller would)."""

    def __init__(self, replicas: int = 2) -> None:
        self.deployment: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NS, "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": NAME}},
                "progressDeadlineSeconds": 600,
                "template": {"metadata": {"labels": {"app": NAME}}, "spec": {"containers": [
                    {"name": CONTAINER, "image": "vllm/vllm-openai:v0.32.0",
                     "command": [*BASE, "--model", "/models/llama"], "args": ["--seed", "1"]},
                    {"name": "sidecar", "image": "busybox", "command": ["sleep", "inf"]},
                ]}},
            },
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                       "availableReplicas": replicas, "readyReplicas": replicas,
                       "conditions": [{"type": "Progressing", "status": "True",
                                       "reason": "NewReplicaSetAvailable"}]},
        }  # fmt: skip
        self.hpas: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.reads_since_patch = 0
        self.restart_count = 0
        self.lock = threading.Lock()

    def template_fails(self) -> bool:
        command = self._container()["command"] or []
        return "--bad-flag" in command

    def _container(self) -> dict[str, Any]:
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        found: dict[str, Any] = next(c for c in containers if c["name"] == CONTAINER)
        return found

    def read(self) -> dict[str, Any]:
        with self.lock:
            self._progress()
            return copy.deepcopy(self.deployment)

    def _progress(self) -> None:
        self.reads_since_patch += 1
        status, spec = self.deployment["status"], self.deployment["spec"]
        wanted = spec["replicas"]
        step = self.reads_since_patch
        if status["observedGeneration"] < self.deployment["metadata"]["generation"]:
            status["observedGeneration"] = self.deployment["metadata"]["generation"]
            status["updatedReplicas"] = 0
            status["conditions"] = [{"type": "Progressing", "status": "True",
                                     "reason": "ReplicaSetUpdated"}]  # fmt: skip
            return
        if status["updatedReplicas"] < wanted:
            status["updatedReplicas"] = wanted
            status["replicas"] = wanted + 1  # surge: an old pod still terminating
            status["availableReplicas"] = 0 if self.template_fails() else 1
            return
        if self.template_fails():
            if step >= 5:  # the progress deadline passes
                status["conditions"] = [{"type": "Progressing", "status": "False",
                                         "reason": "ProgressDeadlineExceeded"}]  # fmt: skip
                self.restart_count += 3  # crash-looping pods
            return
        status["replicas"] = wanted
        status["availableReplicas"] = status["readyReplicas"] = wanted
        status["conditions"] = [{"type": "Progressing", "status": "True",
                                 "reason": "NewReplicaSetAvailable"}]  # fmt: skip

    def patch(self, content_type: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.patches.append((content_type, body))
            before = json.dumps([self.deployment["spec"]["template"],
                                 self.deployment["spec"]["replicas"]], sort_keys=True)  # fmt: skip
            merge(self.deployment, body)
            after = json.dumps([self.deployment["spec"]["template"],
                                self.deployment["spec"]["replicas"]], sort_keys=True)  # fmt: skip
            if before != after:
                self.deployment["metadata"]["generation"] += 1
                self.reads_since_patch = 0
            return copy.deepcopy(self.deployment)

    def pods(self) -> dict[str, Any]:
        status = {"name": CONTAINER, "restartCount": self.restart_count}
        return {"kind": "PodList", "items": [{"status": {"containerStatuses": [status]}}]}


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    fake = FakeCluster()

    class Api(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length", 0))
            data: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
            return data

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == DEPLOYMENTS:
                self._send(200, fake.read())
            elif path == f"/api/v1/namespaces/{NS}/pods":
                assert "labelSelector=app%3Dllama" in self.path
                self._send(200, fake.pods())
            else:
                self._send(404, {"kind": "Status", "message": f"{path} not found"})

        def do_PATCH(self) -> None:
            path = self.path.split("?", 1)[0]
            content_type = self.headers.get("Content-Type", "")
            if path == DEPLOYMENTS:
                if content_type != "application/strategic-merge-patch+json":
                    self._send(415, {"kind": "Status", "message": content_type})
                    return
                self._send(200, fake.patch(content_type, self._body()))
            elif path.startswith(HPAS + "/") and path.rsplit("/", 1)[1] in fake.hpas:
                merge(fake.hpas[path.rsplit("/", 1)[1]], self._body())
                self._send(200, fake.hpas[path.rsplit("/", 1)[1]])
            else:
                self._send(404, {"kind": "Status", "message": "not found", "code": 404})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] == HPAS:
                body = self._body()
                fake.hpas[body["metadata"]["name"]] = body
                self._send(201, body)
            else:
                self._send(404, {"kind": "Status", "message": "not found"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _controller(url: str) -> KubernetesController:
    api = k8s.ApiClient(k8s.Configuration(host=url))
    return KubernetesController(
        api, namespace=NS, deployment=NAME, container=CONTAINER, base_command=BASE,
        model="/models/llama", served_name="llama", smoke=False, sleep=lambda _s: None,
        timeout_s=30,
    )  # fmt: skip


def test_it_patches_the_container_command_and_waits_for_the_rollout(
    cluster: tuple[FakeCluster, str],
) -> None:
    fake, url = cluster
    controller = _controller(url)
    controller.start(None)
    assert controller.running_config() is None  # the Deployment runs its own args (--seed 1)
    config = NodeConfig({"max_num_seqs": 64, "enable_chunked_prefill": True}, replicas=3)
    controller.apply(config)
    container = fake._container()
    assert container["command"] == [*BASE, "--model", "/models/llama", "--max-num-seqs", "64",
                                    "--enable-chunked-prefill"]  # fmt: skip
    assert "args" not in container  # cleared: no stale flag survives
    sidecar = fake.deployment["spec"]["template"]["spec"]["containers"][1]
    assert sidecar["command"] == ["sleep", "inf"]  # merged by name, untouched
    assert fake.deployment["spec"]["replicas"] == 3
    assert fake.deployment["status"]["availableReplicas"] == 3
    assert controller.running_config() == config
    assert [content for content, _ in fake.patches] == ["application/strategic-merge-patch+json"]
    assert controller.check().healthy


def test_a_passed_progress_deadline_is_undone_to_the_previous_command(
    cluster: tuple[FakeCluster, str],
) -> None:
    fake, url = cluster
    controller = _controller(url)
    controller.start(None)
    with pytest.raises(ApplyError) as error:
        controller.apply(NodeConfig({"bad_flag": True}))
    assert error.value.restored is True
    assert "exceeded its progress deadline" in error.value.reason
    container = fake._container()
    assert container["command"] == [*BASE, "--model", "/models/llama"]
    assert container["args"] == ["--seed", "1"]  # the previous template exactly
    assert fake.deployment["spec"]["replicas"] == 2
    assert len(fake.patches) == 2
    done, message = rollout_status(fake.read())
    assert (done, message) == (True, "successfully rolled out")
    assert controller.check().healthy
    assert controller.restarts == 0  # counted from the agent's start


def test_an_autoscaling_manifest_is_created_then_patched(cluster: tuple[FakeCluster, str]) -> None:
    fake, url = cluster
    controller = _controller(url)
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}

    def hpa(max_replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "llama"},
            "spec": {"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": max_replicas},
        }

    controller.apply(NodeConfig({"max_num_seqs": 8}, autoscaling=hpa(4)))
    assert fake.hpas["llama"]["spec"]["maxReplicas"] == 4
    controller.apply(NodeConfig({"max_num_seqs": 16}, autoscaling=hpa(6)))
    assert fake.hpas["llama"]["spec"]["maxReplicas"] == 6


WAITING = [
    ({"observedGeneration": 1}, "waiting for the deployment spec update to be observed"),
    ({"observedGeneration": 2, "updatedReplicas": 1}, "1 out of 3 new replicas have been updated"),
    (
        {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4},
        "1 old replicas are pending termination",
    ),
    (
        {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2},
        "2 of 3 updated replicas are available",
    ),
]


def test_rollout_status_follows_kubectl() -> None:
    base = {"metadata": {"name": "d", "generation": 2}, "spec": {"replicas": 3}}
    for status, message in WAITING:
        assert rollout_status({**base, "status": status}) == (False, message)
    done = {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}
    assert rollout_status({**base, "status": done}) == (True, "successfully rolled out")
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    deadline = {"observedGeneration": 2, "conditions": [stuck]}
    with pytest.raises(RolloutWaitError, match="exceeded its progress deadline"):
        rollout_status({**base, "status": deadline})


class _Source:
    def __init__(self, desired: Desired) -> None:
        self.desired = desired
        self.reports: list[Observed] = []

    def fetch(self) -> Desired:
        return self.desired

    def report(self, observed: Observed) -> None:
        self.reports.append(observed)


def test_the_agent_task_drives_the_deployment_and_reports_the_failure(
    cluster: tuple[FakeCluster, str],
) -> None:
    fake, url = cluster
    controller = _controller(url)
    source = _Source(Desired(generation=1, config=NodeConfig({"max_num_seqs": 64})))
    task = ControllerTask(controller, source, client=httpx.Client())
    task.start()
    assert task.wait_idle(10)
    task.tick(0.0)
    assert task.wait_idle(30)
    report = task.observed()
    assert (report.controller, report.applied_generation, report.state) == (
        "kubernetes", 1, "serving")  # fmt: skip
    source.desired = Desired(generation=2, config=NodeConfig({"bad_flag": True}))
    task.tick(0.0)
    assert task.wait_idle(30)
    report = task.observed()
    assert report.applied_generation == 1
    assert report.last_failure is not None
    assert report.last_failure.generation == 2
    assert "exceeded its progress deadline" in report.last_failure.error
    assert "--max-num-seqs" in " ".join(fake._container()["command"])  # generation 1 again
