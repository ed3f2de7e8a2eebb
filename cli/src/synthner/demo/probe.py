"""The NER API asked one sample request: served here from the model store (in process and over RabbitMQ), or the
NER API process of a ``--processes`` run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TypedDict

from synthner.demo.options import DemoError, DemoOptions
from synthner.processes import ApiKey, write_api_key

SAMPLE_TEXT = (
    "The patient has a history of type 2 diabetes and Duchenne muscular dystrophy; "
    "her brother was treated for colorectal cancer."
)
API_KEY_NAME = "demo"


class Answer(TypedDict):
    status: int
    json: object
    """The response body as JSON."""


class Sample(TypedDict):
    """One request to the NER API and its answer, as ``sample.json`` holds them."""

    url: str
    request: dict[str, str]
    response: Answer
    api_key_file: str


async def serve_and_ask(options: DemoOptions, models_dir: Path) -> Sample:
    """Start the NER API on the model store with a fresh API key, send one request, return request and answer."""
    import httpx
    import uvicorn

    from synthner_ner_api.app import create_app
    from synthner_ner_api.loading import ServingLoader
    from synthner_ner_api.models import ModelRegistry
    from synthner_ner_api.settings import NerApiSettings
    from synthner_shared.local_llm import free_port

    key = write_api_key(options.workdir / "ner-api", API_KEY_NAME)
    port = options.api_port or free_port()
    settings = NerApiSettings(
        auth_mode="api_keys",
        api_keys_file=key.key_file,
        model_store=models_dir,
        listen_for_models=False,
        host="127.0.0.1",
        port=port,
        torch_threads=2,
    )
    registry = ModelRegistry(ServingLoader(settings), store=settings.model_store)
    app = create_app(settings, registry)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            async with asyncio.timeout(180):
                while True:
                    if task.done():
                        task.result()
                        raise DemoError(f"the NER API did not start on port {port}: is the port in use? (--api-port)")
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.2)
        return await ask(base, key)
    except TimeoutError:
        raise DemoError(f"the NER API on port {port} was not ready within 180 s") from None
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


async def ask(base: str, key: ApiKey) -> Sample:
    """One sample request to a ready NER API; prints it and its answer, returns both."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        body = {"text": SAMPLE_TEXT}
        response = await client.post("/v1/ner", json=body, headers={"Authorization": f"Bearer {key.key}"})
        answer = Answer(status=response.status_code, json=response.json())
    sample = Sample(url=f"{base}/v1/ner", request=body, response=answer, api_key_file=str(key.key_path))
    print(f"\nNER API on {base} (API key in {key.key_path}); sample request and response:")
    print(f"  POST {base}/v1/ner  Authorization: Bearer <key>  {json.dumps(body)}")
    print(f"  -> {response.status_code} {json.dumps(answer['json'], ensure_ascii=False)}")
    return sample
