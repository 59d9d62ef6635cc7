#!/usr/bin/env python3
"""The CDK app: one stack for the stage given as context, ``cdk synth -c stage=prod``.

Environment-agnostic (account and region come from the credentials at deploy time) and free of lookups, so
``cdk synth`` runs with no AWS account and no credentials.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import aws_cdk as cdk

from stacks.alipay_global import AlipayGlobalStack
from stacks.settings import SettingsError, StageSettings, check_chalice_stage

PROJECT_DIR = Path(__file__).resolve().parent.parent


def main() -> None:
    # `chalice package` (run by the Chalice construct) builds a botocore client to name service principals; it
    # needs a region and never calls AWS. At deploy time the CDK CLI sets CDK_DEFAULT_REGION from the profile.
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ.get("CDK_DEFAULT_REGION") or "us-east-1")
    app = cdk.App()
    try:
        settings = StageSettings.from_context(
            {key: app.node.try_get_context(key) for key in StageSettings.__dataclass_fields__}
        )
        check_chalice_stage(PROJECT_DIR, settings.stage)
        # The stack checks the stage's Chalice settings too (its protocol's, the legacy key's).
        AlipayGlobalStack(app, settings, project_dir=PROJECT_DIR)
    except SettingsError as exc:
        sys.exit(f"infra: {exc}")
    app.synth()


if __name__ == "__main__":
    main()
