"""A language-model server for tests, run as its own process: ``python tests/llm_server.py
[--key KEY]`` prints ``PORT <n>`` and serves on 127.0.0.1 until killed.

It speaks the two wire formats the model providers use: OpenAI's chat completions
(``POST /v1/chat/completions``, a ``json_schema`` response format) and Anthropic's messages
(``POST /v1/messages``, a forced tool call). With ``--key`` it answers 401 unless the request
carries the key (``Authorization: Bearer`` or ``x-api-key``).

What it answers is scripted (``POST /_script`` with ``{"answers": [...]}``, taken in order),
each answer ``{"status", "headers", "content", "delay", "usage", "model"}``: ``content`` an
object (sent as the JSON answer) or a text (sent as the model's words). Failure modes:
``raw`` (a text sent as the whole 200 response body, e.g. JSON that does not parse),
``cut`` (the response's ``Content-Length`` announces the whole body, half of it is sent,
then the connection is closed: a reset mid-body), ``refusal`` (OpenAI: a message whose
``content`` is null and ``refusal`` says why; Anthropic: no content, ``stop_reason``
``refusal``), ``stop`` (the ``finish_reason`` / ``stop_reason`` to send, e.g.
``content_filter`` or ``length``) and ``echo`` (the model's words are the last user message:
a model echoing its prompt). Unscripted, it
plays a small model: for a classification it picks the category whose name the last user
message mentions (confidence 0.9; else the first category, 0.4); for an extraction, every
field null. ``POST /_reset`` forgets script and requests. ``GET /_requests`` lists what it was sent (path, headers, JSON body).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCRIPT: list[dict[str, Any]] = []
SEEN: list[dict[str, Any]] = []
LOCK = threading.Lock()
KEY: str | None = None


def default_answer(body: dict[str, Any], anthropic: bool) -> Any:
    if anthropic:
        schema = body["tools"][0]["input_schema"]
        last = body["messages"][-1]["content"]
        text = last if isinstance(last, str) else json.dumps(last)
        first = body["messages"][0]["content"]
        text = first if isinstance(first, str) else text
    else:
        schema = body["response_format"]["json_schema"]["schema"]
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
    props = schema.get("properties", {})
    if "category" in props:
        names = props["category"]["enum"]
        lowered = text.lower()
        for name in names:
            if name.replace("_", " ") in lowered:
                return {"category": name, "confidence": 0.9,
                        "rationale": f"the message says {name.replace('_', ' ')!r}"}
        return {"category": names[0], "confidence": 0.4, "rationale": "nothing decided"}
    fields = props.get("fields", {}).get("properties", {})
    return {"fields": {name: {"value": None, "source": None} for name in fields}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _send_cut(self, status: int, payload: Any) -> None:
        """Announce the whole body, send half of it, close the connection."""
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw[: len(raw) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)  # (socket.SHUT_RDWR)

    def do_GET(self) -> None:
        if self.path == "/_requests":
            with LOCK:
                self._send(200, SEEN)
        else:
            self._send(404, {"error": "no such path"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else {}
        if self.path == "/_reset":
            with LOCK:
                SCRIPT.clear()
                SEEN.clear()
            self._send(200, {})
            return
        if self.path == "/_script":
            with LOCK:
                SCRIPT.extend(body["answers"])
            self._send(200, {"queued": len(SCRIPT)})
            return
        anthropic = self.path == "/v1/messages"
        if not anthropic and self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no such path {self.path}"}})
            return
        with LOCK:
            SEEN.append({"path": self.path, "headers": {k.lower(): v for k, v in
                                                        self.headers.items()}, "body": body})
            scripted = SCRIPT.pop(0) if SCRIPT else None
        given = (self.headers.get("x-api-key") if anthropic
                 else (self.headers.get("Authorization") or "").removeprefix("Bearer "))
        if KEY is not None and given != KEY:
            self._send(401, {"error": {"type": "authentication_error",
                                       "message": "invalid api key"}})
            return
        answer = scripted or {}
        if answer.get("delay"):
            time.sleep(float(answer["delay"]))
        status = int(answer.get("status", 200))
        if status != 200:
            self._send(status, {"error": {"type": "error", "message": answer.get(
                "error", f"status {status}")}}, answer.get("headers"))
            return
        if "raw" in answer:
            raw_body = str(answer["raw"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw_body)))
            self.end_headers()
            self.wfile.write(raw_body)
            return
        if answer.get("echo"):
            last = body["messages"][-1]["content"]
            answer = {**answer, "content": last if isinstance(last, str) else json.dumps(last)}
        content = answer["content"] if "content" in answer else default_answer(body, anthropic)
        model = answer.get("model") or body.get("model")
        usage = answer.get("usage") or {"in": 120, "out": 30}
        refusal = answer.get("refusal")
        if anthropic:
            block = ({"type": "tool_use", "id": f"toolu_{len(SEEN)}", "name": "answer",
                      "input": content} if not isinstance(content, str)
                     else {"type": "text", "text": content})
            payload = {"id": f"msg_{len(SEEN)}", "type": "message", "role": "assistant",
                       "model": model, "content": [] if refusal else [block],
                       "stop_reason": answer.get("stop") or ("refusal" if refusal
                                                             else "tool_use"),
                       "usage": {"input_tokens": usage["in"], "output_tokens": usage["out"]}}
        else:
            text = content if isinstance(content, str) else json.dumps(content)
            u: dict[str, Any] = {"prompt_tokens": usage["in"], "completion_tokens": usage["out"],
                                 "total_tokens": usage["in"] + usage["out"]}
            if "cost" in usage:
                u["cost"] = usage["cost"]
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if refusal:
                message = {"role": "assistant", "content": None, "refusal": refusal}
            payload = {"id": f"chatcmpl-{len(SEEN)}", "object": "chat.completion",
                       "model": model, "usage": u,
                       "choices": [{"index": 0, "finish_reason": answer.get("stop") or "stop",
                                    "message": message}]}
        if answer.get("cut"):
            self._send_cut(200, payload)
            return
        self._send(200, payload, answer.get("headers"))


def main() -> None:
    global KEY
    parser = argparse.ArgumentParser()
    parser.add_argument("--key")
    args = parser.parse_args()
    KEY = args.key
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
