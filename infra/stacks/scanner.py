"""What the security scanner (checkov, run by ``make infra-check``) reports and we accept, each with its reason.

Every finding not listed here fails the build. A suppression is written into the resource's template metadata
(``Metadata.checkov.skip``), where checkov reads it; docs/deploy.md lists them for reviewers ("Scanner findings we
accept"), and an infra test keeps that list and this one the same.
"""

from __future__ import annotations

from typing import Final

import aws_cdk as cdk

# check id -> why it does not apply to this stack. One line each, as a reviewer would accept it.
ACCEPTED: Final = {
    "CKV_AWS_27": "queues are encrypted with SQS-managed keys (SSE-SQS); they hold notifications for at most days",
    "CKV_AWS_115": "concurrency is bounded by the stage and route throttles, the consumer's event-source maximum "
    "and the stream's shards; a reservation per function would not deploy on an account with a small quota",
    "CKV_AWS_116": "no function is invoked asynchronously with anything to keep: the queue and the stream have their "
    "own DLQ and failure queue, and a failed scheduled reconciliation is simply the next run's work",
    "CKV_AWS_117": "the functions call only AWS endpoints and Alipay's public gateway; a VPC would add a NAT gateway "
    "to reach Alipay and protect nothing more",
    "CKV_AWS_120": "API responses are per caller and about money in motion (order status, refunds): never cached",
    "CKV_AWS_173": "environment variables hold resource names and ARNs only; secrets and keys live in KMS and SSM",
}


def accept(resource: cdk.CfnResource, *check_ids: str) -> None:
    """Suppress ``check_ids`` on ``resource`` with their reasons from ``ACCEPTED`` (an unknown id is an error)."""
    skips = [{"id": check_id, "comment": ACCEPTED[check_id]} for check_id in check_ids]
    existing = resource.get_metadata("checkov") or {}
    resource.add_metadata("checkov", {"skip": [*existing.get("skip", []), *skips]})
