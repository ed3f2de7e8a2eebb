"""The kubernetes job launcher against a fake API server at the wire boundary (an httpx MockTransport answering the
Kubernetes API's JSON for CronJob get and Job create/get/delete): the Job it creates is the template's, named after
the job folder, and the Job's status conditions map to the job's end. No cluster runs here; the template is the
rendered prod CronJob (k8s/components/gpu-jobs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from synthner_trainer.jobs import JobFolder, JobStatus
from synthner_trainer.kubernetes import (
    JOB_LABEL,
    ClusterAccess,
    KubernetesError,
    KubernetesJobs,
    KubernetesLauncher,
    job_from_template,
    job_status,
)
from tests.deploy.checks import ROOT, render_overlay

NAMESPACE = "synthner"
JOBS = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"


def prod_cronjob() -> dict[str, Any]:
    return next(
        r
        for r in render_overlay(ROOT / "k8s", "prod")
        if r["kind"] == "CronJob" and r["metadata"]["name"] == "trainer-job"
    )


def condition(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message}


class FakeApiServer:
    """The API server's side of the calls: the CronJob, created Jobs whose status follows a script (one entry per
    GET: a list of conditions, or None once the Job is deleted), and every request as it arrived."""

    def __init__(self, script: list[list[dict[str, Any]] | None], existing: bool = False) -> None:
        self.cronjob = prod_cronjob()
        self.script = script
        self.jobs: dict[str, dict[str, Any]] = {}
        self.existing = existing
        self.requests: list[httpx.Request] = []
        self.deleted: list[str] = []
        self.pods: dict[str, list[dict[str, Any]]] = {}

    def status(self, code: int, reason: str, message: str) -> httpx.Response:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message}
        return httpx.Response(code, json={**body, "code": code})

    def __call__(self, request: httpx.Request) -> httpx.Response:  # noqa: PLR0911 - one answer per API call
        self.requests.append(request)
        path = request.url.path
        if request.method == "GET" and path == f"/api/v1/namespaces/{NAMESPACE}/pods":
            selected = request.url.params["labelSelector"].removeprefix("job-name=")
            return httpx.Response(200, json={"kind": "PodList", "items": self.pods.get(selected, [])})
        if request.method == "GET" and path == f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/trainer-job":
            return httpx.Response(200, json=self.cronjob)
        if request.method == "POST" and path == JOBS:
            job = json.loads(request.content)
            name = job["metadata"]["name"]
            if self.existing or name in self.jobs:
                return self.status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            self.jobs[name] = {**job, "status": {}}
            return httpx.Response(201, json=self.jobs[name])
        name = path.removeprefix(JOBS + "/")
        if request.method == "GET" and path.startswith(JOBS + "/"):
            conditions = self.script.pop(0) if self.script else []
            if conditions is None:
                return self.status(404, "NotFound", f'jobs.batch "{name}" not found')
            job = self.jobs.get(name, {"metadata": {"name": name}})
            return httpx.Response(200, json={**job, "status": {"active": 1, "conditions": conditions}})
        if request.method == "DELETE" and path.startswith(JOBS + "/"):
            self.deleted.append(name)
            return httpx.Response(200, json={"kind": "Status", "status": "Success"})
        return self.status(404, "NotFound", path)


def launcher_for(api: FakeApiServer, tmp_path: Path) -> KubernetesLauncher:
    token = tmp_path / "token"
    token.write_text("sa-token\n")
    access = ClusterAccess("https://10.0.0.1:443", NAMESPACE, token, None)
    return KubernetesLauncher(KubernetesJobs(access, httpx.MockTransport(api)), "trainer-job", poll_s=0.01)


def run(api: FakeApiServer, tmp_path: Path, should_stop: Callable[[], bool] = lambda: False) -> JobStatus:
    folder = JobFolder(tmp_path / "jobs" / "synthner-train-0123456789abcdef01234567")
    return launcher_for(api, tmp_path).run(folder, should_stop)


def test_the_job_is_the_templates_named_after_the_folder_with_its_folder_as_argument(tmp_path: Path) -> None:
    api = FakeApiServer([[], [condition("Complete")]])
    assert run(api, tmp_path) == JobStatus("succeeded")
    (job,) = api.jobs.values()
    template = prod_cronjob()["spec"]["jobTemplate"]
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == "synthner-train-0123456789abcdef01234567"
    assert job["metadata"]["labels"][JOB_LABEL] == job["metadata"]["name"]
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "trainer-job"  # the job pods' NetworkPolicy
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["--job", str(tmp_path / "jobs" / "synthner-train-0123456789abcdef01234567")]
    expected = template["spec"]["template"]["spec"]["containers"][0]
    assert {k: v for k, v in container.items() if k != "args"} == expected  # same image, GPU, hardening
    for field in ("activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"):
        assert job["spec"][field] == template["spec"][field]
    # the service account's token on every call, the finished Job removed once its result is taken
    assert {r.headers["Authorization"] for r in api.requests} == {"Bearer sa-token"}
    assert api.deleted == [job["metadata"]["name"]]


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([condition("Complete")], JobStatus("succeeded")),
        (
            [condition("FailureTarget", "BackoffLimitExceeded"), condition("Failed", "BackoffLimitExceeded", "x")],
            JobStatus("failed", "BackoffLimitExceeded: x"),
        ),
        ([condition("Failed", "DeadlineExceeded")], JobStatus("deadline_exceeded", "DeadlineExceeded")),
        (None, JobStatus("deleted", "the Job was deleted")),
    ],
)
def test_the_jobs_status_conditions_map_to_its_end(
    tmp_path: Path, conditions: list[dict[str, Any]] | None, expected: JobStatus
) -> None:
    running = [condition("Complete") | {"status": "False"}]  # a condition that does not hold yet
    api = FakeApiServer([[], running, conditions])
    assert run(api, tmp_path) == expected
    assert len([r for r in api.requests if r.method == "GET" and "/jobs/" in r.url.path]) == 3  # polled until it ended


def test_a_failed_jobs_reason_says_how_its_pods_ended_without_their_logs(tmp_path: Path) -> None:
    api = FakeApiServer([[condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]])
    terminated = {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    api.pods["synthner-train-0123456789abcdef01234567"] = [
        {"metadata": {"name": "p-1"}, "status": {"containerStatuses": [terminated]}}
    ]
    status = run(api, tmp_path)
    assert status.end == "failed"
    assert status.reason.endswith("pods: OOMKilled (exit 137)")


def test_interim_conditions_wait_for_the_final_one() -> None:
    job = {"status": {"conditions": [condition("SuccessCriteriaMet"), condition("FailureTarget", "PodFailurePolicy")]}}
    assert job_status(job) is None
    assert job_status({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}) == JobStatus(
        "deleted", "the Job is being deleted"
    )


def test_a_job_already_there_after_a_restart_is_followed_not_started_again(tmp_path: Path) -> None:
    api = FakeApiServer([[condition("Complete")]], existing=True)
    assert run(api, tmp_path) == JobStatus("succeeded")
    assert [r.method for r in api.requests] == ["GET", "POST", "GET", "DELETE"]


def test_a_stopping_service_leaves_the_job_running(tmp_path: Path) -> None:
    api = FakeApiServer([[], [], []])
    status = run(api, tmp_path, should_stop=lambda: True)
    assert status.end == "cancelled"
    assert api.deleted == []  # the restarted service finds it by name


def test_an_api_error_is_reported_with_its_status_never_the_token(tmp_path: Path) -> None:
    def forbidden(request: httpx.Request) -> httpx.Response:
        message = 'jobs.batch is forbidden: User "system:serviceaccount:synthner:trainer" cannot create'
        return httpx.Response(403, json={"kind": "Status", "reason": "Forbidden", "message": message})

    token = tmp_path / "token"
    token.write_text("sa-token")
    jobs = KubernetesJobs(ClusterAccess("https://10.0.0.1", NAMESPACE, token, None), httpx.MockTransport(forbidden))
    with pytest.raises(KubernetesError, match="HTTP 403 Forbidden") as raised:
        KubernetesLauncher(jobs, "trainer-job").run(JobFolder(tmp_path / "j"), lambda: False)
    assert "sa-token" not in str(raised.value)


def test_in_cluster_access_reads_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    (tmp_path / "namespace").write_text("synthner\n")
    access = ClusterAccess.in_cluster(
        {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}, tmp_path
    )
    assert access.base_url == "https://[fd00::1]:6443"
    assert access.namespace == "synthner"
    with pytest.raises(KubernetesError, match="KUBERNETES_SERVICE_HOST"):
        ClusterAccess.in_cluster({}, tmp_path)
    with pytest.raises(KubernetesError, match="automountServiceAccountToken"):
        ClusterAccess.in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, tmp_path / "missing")


def test_a_template_without_the_job_container_is_refused() -> None:
    cronjob = prod_cronjob()
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["name"] = "trainer"
    with pytest.raises(ValueError, match="no container named 'job'"):
        job_from_template(cronjob, "n", Path("/x"))
