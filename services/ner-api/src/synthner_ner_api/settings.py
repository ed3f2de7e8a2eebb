"""NER API settings (environment prefix ``SYNTHNER_NER_API_``), validated at start-up."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NerApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTHNER_NER_API_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    instance: str = Field(
        default="local", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Replica name; names its model-event queue."
    )
    model_store: Path | None = Field(
        default=None, description="Folder of published model versions (one sub-folder each, as the trainer writes)."
    )
    model_dir: Path | None = Field(default=None, description="Serve this one model folder instead of a store.")
    listen_for_models: bool = Field(default=True, description="Consume ModelPublished events and hot-swap.")

    auth_mode: Literal["api_keys", "trusted_proxy"] = Field(
        description="Chosen explicitly: API keys checked here, or trust an authenticating proxy in front."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="Lines 'name:scope:sha256-hex-of-key' (scope 'user' or 'admin'); re-read when it changes, so keys "
        "rotate without a restart.",
    )
    proxy_user_header: str = Field(default="X-Authenticated-User", description="Header the proxy sets (trusted_proxy).")
    trusted_proxy_cidrs: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: [ip_network("127.0.0.1/32"), ip_network("::1/128")],
        description="trusted_proxy: the header is believed only from these peer addresses (the proxy's); from any "
        "other address it is ignored and the request is 401. Default: loopback (a proxy in the same pod).",
    )
    min_key_bits: int = Field(
        default=128,
        ge=0,
        description="api_keys: a presented key under 32 characters or this many estimated bits is refused even when "
        "its hash is listed (0: no check, for tests only).",
    )
    rate_limit_per_s: float = Field(
        default=10.0, ge=0, description="Requests a second per key (or proxy user) on average, then 429; 0: no limit."
    )
    rate_limit_burst: int = Field(default=20, ge=1, description="Requests a key may send at once after a pause.")
    rate_limit_delay_s: float = Field(
        default=1.0,
        ge=0,
        description="A request over its key's limit waits this long (at most until its next token) before its 429: "
        "a client retrying in a tight loop is slowed to about one request a second per connection.",
    )
    queue_max_texts: int = Field(
        default=256, ge=1, description="Texts waiting for the model across all requests; beyond, 503 + Retry-After."
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="An NER request not answered in this time: 503, and its queued work dropped."
    )

    max_text_chars: int = Field(default=100_000, ge=1, description="Longer texts are answered with 413.")
    max_batch_items: int = Field(default=64, ge=1, description="More items in one batch request: 413.")
    max_body_bytes: int = Field(default=8_000_000, ge=1_000, description="Larger request bodies: 413.")
    batch_max_texts: int = Field(default=32, ge=1, description="Texts per model call across concurrent requests.")
    batch_max_wait_ms: float = Field(default=3.0, ge=0, description="How long a request waits for others to join.")
    runtime: Literal["onnx", "torch"] = Field(
        default="onnx", description="Forward pass on ONNX Runtime (exported at load; faster on CPU) or eager torch."
    )
    int8: bool = Field(default=False, description="Serve int8 weights when they pass the F1 gate.")
    int8_gate_gold: Path | None = Field(default=None, description="Gold JSONL sample the int8 gate scores on.")
    int8_gate_documents: int = Field(default=50, ge=1, description="Documents of the gold sample the gate uses.")
    int8_max_f1_drop: float = Field(default=0.005, ge=0, le=1, description="Largest strict-F1 drop int8 may cost.")
    int8_only_if_faster: bool = Field(
        default=True,
        description="Serve int8 only where the gate's int8 pass ran no slower than fp32's on this CPU (without VNNI"
        " or AMX a shallow model's int8 graph can be the slower).",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="Intra-op threads of ONNX Runtime (and of torch where the torch runtime is chosen); default: all"
        " cores. The manifests set it from the container's CPU limit.",
    )
    previous_model_grace_s: float = Field(
        default=300.0,
        ge=0,
        description="Seconds the previous model stays loaded after a swap (an instant rollback); then its memory is"
        " released and a rollback to it loads it from disk again.",
    )
    cors_origins: list[str] = Field(default_factory=list, description="CORS is off unless origins are listed.")
    environment: Literal["local", "production"] = Field(default="local", alias="SYNTHNER_ENVIRONMENT")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.auth_mode == "api_keys" and self.api_keys_file is None:
            raise ValueError("auth_mode 'api_keys' needs api_keys_file (SYNTHNER_NER_API_API_KEYS_FILE)")
        if self.queue_max_texts < self.max_batch_items:
            raise ValueError("queue_max_texts must hold at least one full batch request (max_batch_items)")
        if self.model_store is None and self.model_dir is None:
            raise ValueError("set SYNTHNER_NER_API_MODEL_STORE or SYNTHNER_NER_API_MODEL_DIR")
        return self
