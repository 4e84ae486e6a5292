"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions wire protocol.

It answers with the embedded SmolLM2 model (through autointerp's local backend), and a fault plan can
make it answer a prompt's n-th attempt with a 429 and Retry-After, a 500, a timeout (it waits longer
than the client), a trickle (a 200 whose body comes one byte a second, so no single read ever times
out), a 401 that echoes the Authorization header, a malformed body or a 400, so the client's retry and
failure handling are tested against real sockets and real JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from autointerp.llm.base import GenerateOptions

OK = "ok"


class FaultPlan:
    """Faults per distinct prompt: the k-th distinct prompt seen gets ``plans[k]`` (a list of faults
    for its 1st, 2nd, ... attempt; attempts beyond the list succeed)."""

    def __init__(self, plans: list[list[str]] | None = None):
        self.plans = plans or []
        self.order: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.arrivals: list[tuple[float, str, int, str]] = []  # (time, prompt hash, attempt, fault)
        self.lock = threading.Lock()

    def next_fault(self, key: str) -> str:
        with self.lock:
            index = self.order.setdefault(key, len(self.order))
            attempt = self.attempts.get(key, 0) + 1
            self.attempts[key] = attempt
            plan = self.plans[index] if index < len(self.plans) else []
            fault = plan[attempt - 1] if attempt <= len(plan) else OK
            self.arrivals.append((time.monotonic(), key, attempt, fault))
            return fault


class ModelServer:
    """``with ModelServer(backend) as server: server.base_url``"""

    def __init__(
        self,
        backend,
        plan: FaultPlan | None = None,
        timeout_sleep: float = 3.0,
        delay: float = 0.0,
        prefix_cache: bool = False,
    ):
        """``prefix_cache``: report usage.prompt_tokens_details.cached_tokens as a server with automatic
        prefix caching would: the longest token prefix the prompt shares with a prompt served before."""
        self.backend = backend
        self.prefix_cache = prefix_cache
        self._served_prompts: list[list[int]] = []
        self.plan = plan or FaultPlan()
        self.timeout_sleep = timeout_sleep
        self.delay = delay
        self.authorization: list[str] = []
        self.served = 0
        self._loop = asyncio.new_event_loop()
        self._generate_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def _trickle(self) -> None:
                body = json.dumps({"id": "x", "choices": [{"message": {"content": "late " * 200}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(1.0)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                    pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, json.dumps({"object": "list", "data": [{"id": "smollm2", "object": "model"}]}).encode()
                    )
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                server.authorization.append(self.headers.get("Authorization", ""))
                key = hashlib.sha256(json.dumps(request["messages"], sort_keys=True).encode()).hexdigest()[:16]
                fault = server.plan.next_fault(key)
                if fault == "429":
                    return self._send(
                        429, b'{"error": {"message": "slow down", "type": "rate_limit"}}', {"Retry-After": "1"}
                    )
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "internal error"}}')
                if fault == "400":
                    return self._send(400, b'{"error": {"message": "bad request: context too long"}}')
                if fault == "timeout":
                    time.sleep(server.timeout_sleep)
                    return self._send(500, b'{"error": {"message": "too late"}}')
                if fault == "echo_auth":  # a careless server that echoes the credentials it got
                    auth = self.headers.get("Authorization", "")
                    message = f"invalid credentials: Authorization: {auth} (key {auth.split()[-1]})"
                    return self._send(401, json.dumps({"error": {"message": message}}).encode())
                if fault == "trickle":
                    return self._trickle()
                if fault == "malformed":
                    return self._send(200, b'{"id": "x", "choices": [{"message": {"content": ')
                body = server.complete(request)
                server.served += 1
                return self._send(200, json.dumps(body).encode())

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def complete(self, request: dict) -> dict:
        messages = request["messages"]
        prefill = ""
        if request.get("continue_final_message") and messages and messages[-1]["role"] == "assistant":
            messages, prefill = messages[:-1], messages[-1]["content"]  # vLLM's extension of the protocol
        options = GenerateOptions(
            max_tokens=int(request.get("max_tokens") or 64),
            temperature=float(request.get("temperature") or 0.0),
            prefill=prefill,
            logprobs=bool(request.get("logprobs")),
            top_logprobs=int(request.get("top_logprobs") or 0),
            seed=request.get("seed"),
            regex=(request.get("structured_outputs") or {}).get("regex", ""),
        )
        if self.delay:
            time.sleep(self.delay)
        with self._generate_lock:
            completion = self._loop.run_until_complete(self.backend.generate(messages, options))
        choice_logprobs = None
        if completion.logprobs is not None:  # the wire format of chat completions' logprobs
            choice_logprobs = {
                "content": [
                    {
                        "token": t.token,
                        "logprob": t.logprob,
                        "bytes": list(t.token.encode()),
                        "top_logprobs": [
                            {"token": a, "logprob": v, "bytes": list(a.encode())} for a, v in t.top.items()
                        ],
                    }
                    for t in completion.logprobs
                ]
            }
        usage = {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        }
        if self.prefix_cache:
            cached = min(self._cached_prefix(messages), completion.prompt_tokens)
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "smollm2"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": completion.finish_reason or "stop",
                    "logprobs": choice_logprobs,
                }
            ],
            "usage": usage,
        }

    def _cached_prefix(self, messages: list[dict]) -> int:
        """Tokens of the prompt's longest common prefix with an earlier prompt (then remembered)."""
        from autointerp.llm.local_backend import chat_token_ids

        ids = chat_token_ids(self.backend._tokenizer, messages, True)
        best = 0
        for earlier in self._served_prompts:
            n = 0
            for a, b in zip(ids, earlier, strict=False):
                if a != b:
                    break
                n += 1
            best = max(best, n)
        self._served_prompts.append(ids)
        return best

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._generate_lock:  # a request the client gave up on may still be generating
            self._loop.run_until_complete(self.backend.aclose())
            self._loop.close()


if __name__ == "__main__":  # a standalone server for the kill-and-resume test and the benchmark
    import argparse
    import sys

    from autointerp.llm.local_backend import LocalBackend

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    with ModelServer(LocalBackend(), delay=args.delay) as srv:
        print(srv.base_url, flush=True)
        sys.stdin.read()  # runs until stdin closes
