"""`make template-lint`: the packaged template through the tools a production review runs.

1. cfn-lint on the SAM template `make package` wrote (build/package/sam.json);
2. the SAM transform, done offline by aws-sam-translator as CloudFormation would do it, and
   cfn-lint on the CloudFormation it produces (build/package/cloudformation.json): only there
   do findings about the resources SAM generates (stage, deployment, permissions) show;
3. checkov on both: the transform carries each resource's `Metadata` (and so its reasoned
   suppressions) over to the resources it generates from it.

Any finding of any tool fails the run. A suppression lives in the template, on the resource,
with a one-line reason (`Metadata.checkov.skip`, `Metadata.cfn-lint.config.ignore_checks`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# What `aws cloudformation package` puts in place of the local zip; SAM accepts nothing else.
# The region only names the pseudo parameters; nothing is asked of AWS.
PACKAGED_CODE_URI = "s3://mdw-deployment-artifacts/deployment.zip"
TRANSFORM_REGION = "us-east-1"


def transform(sam_template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template the SAM transform makes of `sam_template`, without AWS.

    The transform asks IAM for the ARNs of managed policies named in a function's `Policies`;
    this template names none (every function has its own role), so that map is empty."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(sam_template)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = PACKAGED_CODE_URI
    translator = Translator(
        None, Parser(), boto_session=boto3.session.Session(region_name=TRANSFORM_REGION)
    )
    transformed: dict[str, Any] = translator.translate(
        template, parameter_values={}, passthrough_metadata=True, get_managed_policy_map=dict
    )
    return transformed


def run(title: str, command: list[str], env: dict[str, str] | None = None) -> bool:
    print(f"---- {title}: {' '.join(command)}", flush=True)
    result = subprocess.run(command, check=False, env=env)
    print(f"---- {title}: {'ok' if result.returncode == 0 else 'FAILED'}", flush=True)
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_dir", type=Path, help="the output of `make package`")
    parser.add_argument("--checkov", required=True, help="the checkov executable")
    args = parser.parse_args(argv)

    sam_path: Path = args.package_dir / "sam.json"
    cloudformation_path: Path = args.package_dir / "cloudformation.json"
    cfn_lint = str(Path(sys.executable).parent / "cfn-lint")

    cloudformation = transform(json.loads(sam_path.read_text()))
    cloudformation_path.write_text(json.dumps(cloudformation, indent=1) + "\n")

    results = [
        run("cfn-lint, SAM template", [cfn_lint, str(sam_path)]),
        run("cfn-lint, transformed CloudFormation", [cfn_lint, str(cloudformation_path)]),
        *(
            run(
                f"checkov, {title}",
                [
                    args.checkov,
                    "--framework",
                    "cloudformation",
                    "--file",
                    str(path),
                    "--compact",
                    "--quiet",
                    "--skip-download",
                ],
                # The version is pinned: no asking PyPI for a newer one on every run.
                env={**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"},
            )
            for title, path in (
                ("SAM template", sam_path),
                ("transformed CloudFormation", cloudformation_path),
            )
        ),
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
