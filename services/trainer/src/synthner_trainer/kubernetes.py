"""The kubernetes job launcher: each training or adaptation as a ``batch/v1`` Job on a GPU node, from the same image.

The Job's template is a suspended CronJob (``trainer-job`` in ``k8s/components/gpu-jobs``): kustomize sets its image
like every other workload's, the offline checks validate it as one, and ``kubectl create job --from=cronjob/...``
starts the same Job by hand. For each job the service reads the CronJob's ``spec.jobTemplate``, names the Job after
the job folder (:func:`~synthner_trainer.jobs.job_id`, so a restarted service finds the Job it started instead of
starting another: a create that answers 409 adopts it), passes ``--job <folder>`` to the container named ``job``,
and reads the Job's status every ``job_poll_s`` until it is complete, failed (its deadline included) or gone.

It talks to the API server with the pod's service account (in-cluster: ``KUBERNETES_SERVICE_HOST``/``_PORT``, the
token and CA under :data:`SERVICE_ACCOUNT`), over plain httpx, following the Kubernetes API's JSON for Jobs.
"""

from __future__ import annotations

import copy
import logging
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from synthner_trainer.jobs import JobEnd, JobFolder, JobStatus
from synthner_trainer.training import StopCheck

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
JOB_CONTAINER = "job"
"""The container of the Job template that runs ``python -m synthner_trainer.job``; it gets ``--job <folder>``."""
JOB_LABEL = "synthner.io/trainer-job"
"""Label every job's Job and pods carry (its value: the job id); the job pods' NetworkPolicy selects on it."""


class KubernetesError(RuntimeError):
    """The API server refused a request or could not be reached (its status and reason, never a token)."""


@dataclass(frozen=True)
class ClusterAccess:
    """Where the API server is and how this pod authenticates to it."""

    base_url: str
    namespace: str
    token_file: Path
    ca_file: Path | None

    @classmethod
    def in_cluster(cls, env: Mapping[str, str] = os.environ, account: Path = SERVICE_ACCOUNT) -> ClusterAccess:
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubernetesError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
        if not (account / "token").is_file():
            raise KubernetesError(
                "no service-account token: the trainer's pod needs automountServiceAccountToken: true"
            )
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        namespace = (account / "namespace").read_text(encoding="utf-8").strip()
        return cls(f"https://{host}:{port}", namespace, account / "token", account / "ca.crt")

    def token(self) -> str:
        """Read for every request: a projected token is rotated by the kubelet."""
        return self.token_file.read_text(encoding="utf-8").strip()


class KubernetesJobs:
    """The few calls of the ``batch/v1`` API the launcher makes, in one namespace."""

    def __init__(self, access: ClusterAccess, transport: httpx.BaseTransport | None = None) -> None:
        self.access = access
        verify: ssl.SSLContext | bool = True
        if access.ca_file is not None and access.ca_file.is_file():
            verify = ssl.create_default_context(cafile=str(access.ca_file))
        self._client = httpx.Client(base_url=access.base_url, verify=verify, transport=transport, timeout=30.0)
        self._prefix = f"/apis/batch/v1/namespaces/{access.namespace}"

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.access.token()}", "Accept": "application/json"}
        try:
            return self._client.request(method, self._prefix + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise KubernetesError(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _failed(response: httpx.Response, what: str) -> KubernetesError:
        try:
            status = response.json()
            detail = f"{status.get('reason', '')}: {status.get('message', '')}"
        except ValueError:
            detail = response.reason_phrase
        return KubernetesError(f"{what}: HTTP {response.status_code} {detail}")

    def cronjob(self, name: str) -> dict[str, Any]:
        response = self._request("GET", f"/cronjobs/{name}")
        if response.status_code != httpx.codes.OK:
            raise self._failed(response, f"reading the job template cronjob/{name}")
        return dict(response.json())

    def create(self, job: dict[str, Any]) -> bool:
        """Create the Job; False where one of its name exists already (started before a restart)."""
        response = self._request("POST", "/jobs", job)
        if response.status_code == httpx.codes.CONFLICT:
            return False
        if response.status_code not in (httpx.codes.OK, httpx.codes.CREATED, httpx.codes.ACCEPTED):
            raise self._failed(response, f"creating job/{job['metadata']['name']}")
        return True

    def get(self, name: str) -> dict[str, Any] | None:
        """The Job, None where it does not exist (deleted)."""
        response = self._request("GET", f"/jobs/{name}")
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        if response.status_code != httpx.codes.OK:
            raise self._failed(response, f"reading job/{name}")
        return dict(response.json())

    def pod_endings(self, name: str) -> list[str]:
        """How the Job's pods' containers ended (``OOMKilled``, ``Error (exit 1)``...), read from the pods' status
        (label ``job-name``, set by Kubernetes): the failure's reason without the pods' logs. Empty if unreadable."""
        path = f"/api/v1/namespaces/{self.access.namespace}/pods"
        headers = {"Authorization": f"Bearer {self.access.token()}", "Accept": "application/json"}
        try:
            response = self._client.get(path, params={"labelSelector": f"job-name={name}"}, headers=headers)
        except httpx.HTTPError:
            return []
        if response.status_code != httpx.codes.OK:
            return []
        endings = []
        for pod in response.json().get("items") or []:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated") or {}
                if terminated:
                    endings.append(f"{terminated.get('reason', 'terminated')} (exit {terminated.get('exitCode')})")
        return endings

    def delete(self, name: str) -> None:
        """Delete the Job and its pods (background propagation); a Job already gone is fine."""
        response = self._request("DELETE", f"/jobs/{name}", {"propagationPolicy": "Background"})
        if response.status_code not in (httpx.codes.OK, httpx.codes.ACCEPTED, httpx.codes.NOT_FOUND):
            raise self._failed(response, f"deleting job/{name}")


def job_from_template(cronjob: Mapping[str, Any], name: str, folder: Path) -> dict[str, Any]:
    """The Job for one job folder from the CronJob's ``spec.jobTemplate``: its name, :data:`JOB_LABEL` on the Job
    and its pods, ``--job <folder>`` for the :data:`JOB_CONTAINER` container. Raises ValueError if the template has
    no such container."""
    template = copy.deepcopy(dict(cronjob["spec"]["jobTemplate"]))
    metadata = dict(template.get("metadata") or {})
    labels = {**(metadata.get("labels") or {}), JOB_LABEL: name}
    spec = template["spec"]
    pod_metadata = spec["template"].setdefault("metadata", {})
    pod_metadata["labels"] = {**(pod_metadata.get("labels") or {}), JOB_LABEL: name}
    containers = [c for c in spec["template"]["spec"]["containers"] if c.get("name") == JOB_CONTAINER]
    if len(containers) != 1:
        raise ValueError(f"the job template has no container named {JOB_CONTAINER!r}")
    containers[0]["args"] = ["--job", str(folder)]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "annotations": metadata.get("annotations") or {}},
        "spec": spec,
    }


def job_status(job: Mapping[str, Any] | None) -> JobStatus | None:
    """How a Job ended, from its status conditions; None while it runs. A Job that is gone, or being deleted, ended
    as ``deleted``; one failed with reason ``DeadlineExceeded`` (its ``activeDeadlineSeconds``) as
    ``deadline_exceeded``. The interim conditions (``SuccessCriteriaMet``, ``FailureTarget``) wait for the final one,
    which Kubernetes sets once the pods have stopped."""
    if job is None:
        return JobStatus("deleted", "the Job was deleted")
    if job.get("metadata", {}).get("deletionTimestamp"):
        return JobStatus("deleted", "the Job is being deleted")
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        reason = str(condition.get("reason") or "")
        message = str(condition.get("message") or "")
        if condition.get("type") == "Complete":
            return JobStatus("succeeded")
        if condition.get("type") == "Failed":
            end: JobEnd = "deadline_exceeded" if reason == "DeadlineExceeded" else "failed"
            return JobStatus(end, f"{reason}: {message}" if message else reason)
    return None


class KubernetesLauncher:
    """Runs a job folder's job as a Kubernetes Job (:class:`~synthner_trainer.jobs.JobLauncher`)."""

    def __init__(self, jobs: KubernetesJobs, template: str, poll_s: float = 5.0) -> None:
        self.jobs = jobs
        self.template = template
        self.poll_s = poll_s

    def run(self, folder: JobFolder, should_stop: StopCheck) -> JobStatus:
        name = folder.id
        job = job_from_template(self.jobs.cronjob(self.template), name, folder.path)
        if self.jobs.create(job):
            log.info("created job/%s from cronjob/%s", name, self.template)
        else:
            log.info("job/%s exists already (started before a restart); following it", name)
        while True:
            status = job_status(self.jobs.get(name))
            if status is not None:
                if status.end in ("failed", "deadline_exceeded"):
                    endings = self.jobs.pod_endings(name)
                    if endings:
                        status = JobStatus(status.end, f"{status.reason}; pods: {', '.join(endings)}")
                log.info("job/%s ended: %s %s", name, status.end, status.reason)
                if status.end != "deleted":
                    self.jobs.delete(name)  # its result is in the job folder; the pods' logs go with it
                return status
            if _stopping_within(should_stop, self.poll_s):
                # Left running: the restarted service finds it by name and takes its result.
                return JobStatus("cancelled", f"the service is stopping; job/{name} is left to finish")


def _stopping_within(should_stop: StopCheck, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if should_stop():
            return True
        time.sleep(min(0.1, seconds))
    return should_stop()
