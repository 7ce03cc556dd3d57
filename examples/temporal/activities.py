"""Temporal activities that give a workflow's steps their secrets through stigmer-exec.

What Temporal stores in its history — every activity's input and output — holds execution
ids, names and commands, never a value and never a token:

- the secrets are in the stigmer-exec server's store (Environments an operator applied);
  `ContextSpec` names them, and `create_context` asks the server to merge them;
- the execution token the server returns stays in this worker's memory (`_tokens`), so the
  steps of that execution must run here: `worker_task_queue` names this worker's own task
  queue and the workflow sends `create_context` and `run_step` there;
- `run_step` hands the token to the launcher on a pipe, and runs the command with
  `--mask-output`, so a value it prints comes back as `<concealed>`.

The worker holds the operator token (a file, read at each use) to create and delete
contexts; the commands it runs never see it (they get the context's values only).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from temporalio import activity
from temporalio.exceptions import ApplicationError

import stigmer_exec


@dataclass
class ContextSpec:
    """What an execution's context is made of: names, never values."""

    execution_id: str
    agent: str = ""
    instance: str = ""
    environment_refs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # plain (non-secret) values only
    ttl_seconds: int = 3600  # the backstop: the server's sweep deletes it after this


@dataclass
class Step:
    execution_id: str
    argv: list[str]
    file_vars: list[str] = field(default_factory=list)  # handed over as files (NAME_FILE)
    timeout_seconds: Optional[float] = None


@dataclass
class StepResult:
    execution_id: str
    returncode: int
    stdout: str  # masked: a secret the command printed reads <concealed>
    stderr: str


@dataclass
class RunnerConfig:
    """The worker's settings (from its deployment, not from any workflow)."""

    server: str  # grpcs://stigmer-exec.example:7443
    operator_token_file: str
    tls_ca: Optional[str] = None
    binary: Optional[str] = None  # default: $STIGMER_EXEC_BIN, else PATH
    fetch_timeout: float = 30.0
    grace_period: float = 10.0
    heartbeat_interval: float = 5.0


def application_error(error: stigmer_exec.StigmerExecError) -> ApplicationError:
    """The failure Temporal records for a stigmer-exec exception: its type name, its
    message (names, never values), status, code and the missing names as details. Only
    an unavailable server and a failed command are worth retrying."""
    details: dict[str, object] = {"status": error.status, "code": error.code}
    if isinstance(error, stigmer_exec.MissingVariables):
        details["names"] = list(error.names)
    if isinstance(error, stigmer_exec.ChildFailed):
        details["signal"] = error.signal
    retryable = isinstance(error, (stigmer_exec.Unavailable, stigmer_exec.ChildFailed))
    return ApplicationError(error.message, details, type=type(error).__name__, non_retryable=not retryable)


class StigmerActivities:
    """The activities of one worker; `task_queue` is the queue only this worker polls."""

    def __init__(self, config: RunnerConfig, task_queue: str) -> None:
        self.config = config
        self.task_queue = task_queue
        self._tokens: dict[str, tuple[str, float]] = {}  # execution id -> (token, expiry)

    def _operator_token(self) -> str:
        return Path(self.config.operator_token_file).read_text().strip()

    @activity.defn(name="stigmer.worker_task_queue")
    async def worker_task_queue(self) -> str:
        return self.task_queue

    @activity.defn(name="stigmer.create_context")
    async def create_context(self, spec: ContextSpec) -> None:
        """Create (or, on a retry, replace) the context; keep its token here."""
        try:
            token = await asyncio.to_thread(
                stigmer_exec.create_context, spec.execution_id, env=spec.env, agent=spec.agent,
                instance=spec.instance, environment_refs=spec.environment_refs, ttl_seconds=spec.ttl_seconds,
                replace=True, server=self.config.server, operator_token=self._operator_token(),
                tls_ca=self.config.tls_ca)
        except stigmer_exec.StigmerExecError as error:
            raise application_error(error) from None
        now = time.time()
        self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}  # expired: useless anyway
        self._tokens[spec.execution_id] = (token, now + spec.ttl_seconds)

    @activity.defn(name="stigmer.run_step")
    async def run_step(self, step: Step) -> StepResult:
        """Run one command with the execution's values; heartbeats while it runs, and a
        cancellation stops it (SIGTERM to its process group, SIGKILL after the grace)."""
        entry = self._tokens.get(step.execution_id)
        if entry is None:
            raise ApplicationError(f"no context for execution {step.execution_id} on this worker (restarted?)",
                                   type="ContextNotHere", non_retryable=True)
        c = self.config
        try:
            done = await stigmer_exec.run_async(
                step.execution_id, step.argv, token=entry[0], file_vars=step.file_vars, server=c.server,
                tls_ca=c.tls_ca, binary=c.binary, fetch_timeout=c.fetch_timeout, mask_output=True,
                timeout=step.timeout_seconds, grace_period=c.grace_period,
                heartbeat=activity.heartbeat, heartbeat_interval=c.heartbeat_interval)
        except stigmer_exec.StigmerExecError as error:
            raise application_error(error) from None
        return StepResult(step.execution_id, done.returncode, (done.stdout or b"").decode(errors="replace"),
                          (done.stderr or b"").decode(errors="replace"))

    @activity.defn(name="stigmer.delete_context")
    async def delete_context(self, execution_id: str) -> bool:
        """Delete the context (any worker may: the operator token suffices)."""
        self._tokens.pop(execution_id, None)
        try:
            return await asyncio.to_thread(stigmer_exec.delete_context, execution_id, server=self.config.server,
                                           operator_token=self._operator_token(), tls_ca=self.config.tls_ca)
        except stigmer_exec.StigmerExecError as error:
            raise application_error(error) from None

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register, on both the shared queue and this worker's own."""
        return [self.worker_task_queue, self.create_context, self.run_step, self.delete_context]
