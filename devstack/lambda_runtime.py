"""What Lambda hands a handler besides the event (the context object), and its concurrent environments."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

LOCAL_ACCOUNT_ID = "123456789012"  # moto's account: ARNs made up here agree with the emulator's
REGION = "us-east-1"  # moto's stream records always say us-east-1: any other region would disagree with them


@dataclass
class LambdaContext:
    """Lambda's context object: the attributes Chalice and Powertools read."""

    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    timeout_seconds: float = 30.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


def stop_with_parent() -> None:
    """In a child process: the kernel sends it SIGTERM when its parent dies (Linux), so none is orphaned."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def fork_environments(count: int) -> list[int]:
    """Fork ``count - 1`` copies of this process: Lambda's concurrent execution environments of one function.

    Call it once the function's code is imported and before any AWS client exists, so that no connection is
    shared. In the parent it returns the children's pids; in a child, an empty list. The children stay in the
    parent's process group (the stack stops the group) and also stop when the parent dies.
    """
    children: list[int] = []
    for _ in range(count - 1):
        pid = os.fork()
        if pid == 0:
            stop_with_parent()
            return []
        children.append(pid)
    return children


def stop_environments(children: list[int]) -> None:
    """SIGTERM to the children ``fork_environments`` returned (those already gone are skipped)."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
