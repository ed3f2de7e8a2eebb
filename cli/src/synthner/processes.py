"""The services as supervised OS processes, as ``synthner demo --processes`` and the chaos run start them: each its
production entry point (``python -m synthner_<service>``) with its settings in environment variables and a health URL
on 127.0.0.1 that :meth:`synthner.supervisor.Supervisor.wait_ready` polls; the NER API with an API key written for
the run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from synthner.supervisor import ProcessSpec, module_argv, settings_env
from synthner_shared.local_llm import free_port
from synthner_shared.messaging import BrokerSettings

Stage = Literal["generator", "annotator", "trainer"]


@dataclass(frozen=True)
class ApiKey:
    """A fresh NER API key for one run."""

    key: str
    """The key itself, sent as ``Authorization: Bearer <key>``."""
    key_file: Path
    """The NER API's key file: the key's hash (``SYNTHNER_NER_API_API_KEYS_FILE``)."""
    key_path: Path
    """The key in a file only its owner reads (0600), for the person running the demo."""


def write_api_key(folder: Path, name: str) -> ApiKey:
    """A fresh API key (scope ``user``, named ``name``): its hash in ``folder/api-keys``, the key itself in
    ``folder/api-key.txt`` (0600)."""
    from synthner_ner_api.auth import hash_key, new_key  # noqa: PLC0415 - only runs that start the NER API need it

    folder.mkdir(parents=True, exist_ok=True)
    key = new_key()
    key_file = folder / "api-keys"
    key_file.write_text(f"{name}:user:{hash_key(key)}\n", encoding="utf-8")
    key_path = folder / "api-key.txt"
    key_path.touch(mode=0o600)
    key_path.write_text(key + "\n", encoding="utf-8")
    return ApiKey(key, key_file, key_path)


def broker_env(broker: BrokerSettings, *, limits: bool = False) -> dict[str, str]:
    """The broker's URL and namespace as every service reads them; ``limits``: its other settings too (back-off,
    timeouts), which otherwise stay the services' defaults."""
    env = {"AMQP_URL": broker.url.get_secret_value(), "SYNTHNER_BROKER_NAMESPACE": broker.namespace}
    if limits:
        env |= settings_env("SYNTHNER_BROKER_", broker, exclude=("url", "namespace"))
    return env


def stage_process(
    stage: Stage, settings: BaseModel, common: Mapping[str, str], *, name: str | None = None, restart: bool = False
) -> ProcessSpec:
    """A stage's service (generator, annotator or trainer) with ``settings`` (its settings class) and ``common``
    (:func:`broker_env`) in its environment and a fresh health port; ready when its ``/readyz`` answers."""
    prefix = f"SYNTHNER_{stage.upper()}_"
    port = free_port()
    env = {**common, **settings_env(prefix, settings), f"{prefix}HEALTH_PORT": str(port)}
    if stage == "annotator":  # its health server listens on every interface by default (for the pod's probes)
        env[f"{prefix}HEALTH_HOST"] = "127.0.0.1"
    return ProcessSpec(name or stage, module_argv(f"synthner_{stage}"), env, f"http://127.0.0.1:{port}/readyz", restart)


def ner_api_process(
    common: Mapping[str, str],
    *,
    key_file: Path,
    model_store: Path,
    port: int,
    instance: str,
    torch_threads: int,
    restart: bool = False,
) -> ProcessSpec:
    """The NER API on 127.0.0.1:``port`` serving ``model_store`` (and following ``ModelPublished`` events), with API
    keys from ``key_file``. Its ready URL is ``/livez``: it is ready (``/readyz``) only once a model is loaded."""
    env = {
        **common,
        "SYNTHNER_NER_API_AUTH_MODE": "api_keys",
        "SYNTHNER_NER_API_API_KEYS_FILE": str(key_file),
        "SYNTHNER_NER_API_MODEL_STORE": str(model_store),
        "SYNTHNER_NER_API_LISTEN_FOR_MODELS": "true",
        "SYNTHNER_NER_API_INSTANCE": instance,
        "SYNTHNER_NER_API_HOST": "127.0.0.1",
        "SYNTHNER_NER_API_PORT": str(port),
        "SYNTHNER_NER_API_TORCH_THREADS": str(torch_threads),
    }
    return ProcessSpec("ner-api", module_argv("synthner_ner_api"), env, f"http://127.0.0.1:{port}/livez", restart)
