"""An agent run as a Temporal workflow: its context is created when it starts, each step
runs with the context's secrets, and the context is deleted when it ends — completed,
failed or cancelled. If the workflow never gets there (terminated, its worker gone for
good), the server's TTL sweep deletes the context after `ttl_seconds`.

Run a worker and one workflow (needs a Temporal server and a stigmer-exec server):

    TEMPORAL_ADDRESS=localhost:7233 STIGMER_SERVER=grpcs://stigmer-exec:7443 \\
    STIGMER_OPERATOR_TOKEN_FILE=/run/secrets/stigmer-operator STIGMER_TLS_CA=ca.pem \\
    python3 workflow.py github-reviewer-prod -- python3 agent.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities import ContextSpec, RunnerConfig, StigmerActivities, Step, StepResult

SHARED_QUEUE = "stigmer-runner"


@dataclass
class Job:
    """The workflow's input: names and commands, never a value."""

    steps: list[list[str]]
    instance: str = ""
    environment_refs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # plain values only
    ttl_seconds: int = 3600  # longer than the run may take
    step_timeout_seconds: float = 600
    # A running step learns of a cancellation from its heartbeats' answers, which the SDK
    # sends at most every 0.8 x this: the latency of a cancellation.
    heartbeat_timeout_seconds: float = 30


@workflow.defn
class AgentRun:
    @workflow.run
    async def run(self, job: Job) -> list[StepResult]:
        execution_id = workflow.info().workflow_id  # printable ASCII, at most 256 bytes
        # The token stays on the worker that created the context: pin the steps to it.
        queue = await workflow.execute_activity_method(
            StigmerActivities.worker_task_queue, start_to_close_timeout=timedelta(seconds=10))
        pinned = timedelta(minutes=1)  # the schedule-to-start limit there: a worker gone fails fast
        await workflow.execute_activity_method(
            StigmerActivities.create_context,
            ContextSpec(execution_id, instance=job.instance, environment_refs=job.environment_refs,
                        env=job.env, ttl_seconds=job.ttl_seconds),
            task_queue=queue, schedule_to_start_timeout=pinned, start_to_close_timeout=timedelta(seconds=60))
        try:
            results = []
            for argv in job.steps:
                results.append(await workflow.execute_activity_method(
                    StigmerActivities.run_step, Step(execution_id, argv, timeout_seconds=job.step_timeout_seconds),
                    start_to_close_timeout=timedelta(seconds=job.step_timeout_seconds + 60),
                    heartbeat_timeout=timedelta(seconds=job.heartbeat_timeout_seconds),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    task_queue=queue, schedule_to_start_timeout=pinned))
            return results
        finally:
            # Completed, failed or cancelled: delete it now (any worker can).
            await workflow.execute_activity_method(
                StigmerActivities.delete_context, execution_id, start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=5))


async def main(argv: list[str]) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    instance, steps = argv[0], [argv[argv.index("--") + 1:]]
    config = RunnerConfig(server=os.environ["STIGMER_SERVER"], tls_ca=os.environ.get("STIGMER_TLS_CA"),
                          operator_token_file=os.environ["STIGMER_OPERATOR_TOKEN_FILE"])
    client = await Client.connect(os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"))
    own_queue = f"{SHARED_QUEUE}-{uuid.uuid4()}"
    activities = StigmerActivities(config, own_queue)
    async with Worker(client, task_queue=SHARED_QUEUE, workflows=[AgentRun], activities=activities.all()), \
            Worker(client, task_queue=own_queue, activities=activities.all()):
        results = await client.execute_workflow(AgentRun.run, Job(steps=steps, instance=instance),
                                                id=f"agent-run-{uuid.uuid4()}", task_queue=SHARED_QUEUE)
    for result in results:
        print(result.returncode, result.stdout, end="")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
