"""Partner APIs on 127.0.0.1 for the sink tests: they check request shapes, answer as the partner
documents (roughly), and fail on request: 429 with Retry-After, 500, a slow answer, a 400, or
an outage (503 and 429 with Retry-After, for a while)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devtools.local import free_port

HASH = re.compile(r"[0-9a-f]{64}")
META_SCHEMA = ["EMAIL", "PHONE", "MADID"]


@dataclass
class Applied:
    """One record (row, object) the partner took, in the order it took them."""

    key: str  # record id (webhook), row value (ad audiences), user identifier (CRM)
    action: str


@dataclass
class FakePartner:
    kind: str  # "webhook" | "ad-audiences" | "email-crm"
    token: str
    reject: set[str] = field(default_factory=set)  # keys refused one by one
    faults: list[str] = field(default_factory=list)  # answers for the next requests
    delay_s: float = 0.0  # before each answer, to catch a runner mid-batch
    down_until: float = 0.0  # time.monotonic() until which every request gets 503 or 429
    retry_after_s: int = 5  # the Retry-After of the outage's answers
    outage_answers: int = 0
    applied: list[Applied] = field(default_factory=list)
    requests: int = 0
    problems: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def go_down(self, seconds: float) -> None:
        """An outage from now: 503 and 429 (with Retry-After) for ``seconds``, then normal."""
        self.down_until = time.monotonic() + seconds

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.problems.append("missing or wrong Authorization")
            return web.json_response({"message": "Invalid API key"}, status=401)
        body = await request.json()
        if time.monotonic() < self.down_until:
            self.outage_answers += 1
            status = (503, 429)[self.outage_answers % 2]
            headers = {"Retry-After": str(self.retry_after_s)}
            return web.json_response({"message": "unavailable"}, status=status, headers=headers)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "429":
            reset = {"X-RateLimit-Reset": str(int(time.time()) + 1)}
            headers = reset if self.kind == "email-crm" else {"Retry-After": "1"}
            return web.json_response({"message": "rate limited"}, status=429, headers=headers)
        if fault == "500":
            return web.json_response({"message": "internal error"}, status=500)
        if fault == "slow":
            await asyncio.sleep(3)  # longer than the sink's timeout: it gives up and retries
            return web.json_response({}, status=200)
        if fault == "throttle":  # Meta's way: 400 with a rate-limit error code
            error = {"message": "User request limit reached", "type": "OAuthException", "code": 17}
            return web.json_response({"error": error}, status=400)
        if fault == "400":
            return self.bad_request()
        handler = {"webhook": self.webhook, "ad-audiences": self.ad_audiences}.get(
            self.kind, self.email_crm
        )
        response = handler(request, body)
        # Applied, then slow to answer: a sink killed now never learns its batch went through.
        await asyncio.sleep(self.delay_s)
        return response

    def bad_request(self) -> web.Response:
        if self.kind == "ad-audiences":
            error = {"message": "Invalid parameter", "type": "OAuthException", "code": 100}
            return web.json_response({"error": error}, status=400)
        return web.json_response({"message": "Invalid request"}, status=400)

    def webhook(self, request: web.Request, body: Any) -> web.Response:
        if request.method != "POST" or not isinstance(body.get("records"), list):
            self.problems.append(f"webhook: bad request {request.method}")
            return web.json_response({"error": "bad shape"}, status=422)
        rejected = []
        for record in body["records"]:
            if record["record_id"] in self.reject:
                rejected.append({"record_id": record["record_id"], "reason": "unknown user"})
            else:
                self.applied.append(Applied(record["record_id"], record["action"]))
        return web.json_response({"rejected": rejected})

    def ad_audiences(self, request: web.Request, body: Any) -> web.Response:
        payload = body.get("payload", {})
        data = payload.get("data")
        if (
            request.method not in ("POST", "DELETE")
            or not re.fullmatch(r"/v21\.0/[0-9]+/users", request.path)
            or payload.get("schema") != META_SCHEMA
            or not isinstance(data, list)
            or not 0 < len(data) <= 10_000
        ):
            self.problems.append(f"ad-audiences: bad request {request.method} {request.path}")
            return self.bad_request()
        invalid: dict[str, str] = {}
        for email, phone, madid in data:
            if any(value and not HASH.fullmatch(value) for value in (email, phone)):
                self.problems.append("ad-audiences: unhashed email or phone")
            if madid != madid.lower():
                self.problems.append("ad-audiences: mobile ad id not lower-cased")
            key = email or phone or madid
            if key in self.reject:
                invalid[key] = "Invalid entry"
            else:
                self.applied.append(Applied(key, "add" if request.method == "POST" else "remove"))
        answer = {
            "audience_id": request.path.split("/")[2],
            "session_id": "1",
            "num_received": len(data),
            "num_invalid_entries": len(invalid),
            "invalid_entry_samples": invalid,
        }
        return web.json_response(answer)

    def email_crm(self, request: web.Request, body: Any) -> web.Response:
        users = body.get("attributes")
        if request.path != "/users/track" or not isinstance(users, list) or not users:
            self.problems.append("email-crm: bad request")
            return self.bad_request()
        if len(users) > 75:
            self.problems.append(f"email-crm: {len(users)} objects in one request")
            return web.json_response({"message": "Too many attributes"}, status=400)
        errors = []
        for index, user in enumerate(users):
            key = user.get("external_id") or user.get("email")
            if not key:
                self.problems.append("email-crm: object without identifier")
            if key in self.reject:
                errors.append({"type": "Invalid user", "input_array": "attributes", "index": index})
                continue
            memberships = [v for name, v in user.items() if name.startswith("audience_")]
            action = "attribute_update"
            if memberships:
                action = "add" if memberships[0] else "remove"
            self.applied.append(Applied(key, action))
        answer: dict[str, Any] = {"message": "success", "attributes_processed": len(users)}
        if errors:
            answer["errors"] = errors
        return web.json_response(answer, status=201)
