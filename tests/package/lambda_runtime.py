"""A stand-in for the Lambda Python runtime: one warm container of one function.

Run as `python3.12 -I -S lambda_runtime.py PACKAGE_DIR RUNTIME_DIR HANDLER`: an isolated
interpreter (no site-packages, no PYTHON* variables) whose import path holds only the unzipped
deployment package and the runtime's own libraries (boto3), as in Lambda. The handler's module
is imported by name, as the runtime does, then each line of standard input is one invocation,
`{"event": ..., "remaining_ms": ...}`, answered by one line on the result pipe: `{"result": ...}`
or the runtime's `{"errorType", "errorMessage"}`. What the function prints and logs goes to
standard output, as in Lambda, where it reaches CloudWatch Logs.
"""

import importlib
import json
import logging
import os
import sys
import time
import uuid


class Context:
    """The attributes of the runtime's context object that functions read."""

    def __init__(self, function_name, remaining_ms):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        )
        self.memory_limit_in_mb = "512"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main():
    package_dir, runtime_dir, handler_name, result_fd = sys.argv[1:5]
    sys.path[:0] = [package_dir, runtime_dir]
    results = os.fdopen(int(result_fd), "w", buffering=1)
    # The runtime installs a handler on the root logger before it imports the function.
    logging.getLogger().addHandler(logging.StreamHandler(sys.stdout))
    module_name, _, attribute = handler_name.rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # the runtime's Runtime.ImportModuleError
        results.write(
            json.dumps(
                {
                    "errorType": "Runtime.ImportModuleError",
                    "errorMessage": f"{type(exc).__name__}: {exc}",
                }
            )
            + "\n"
        )
        return 1
    results.write(json.dumps({"ready": True, "modules": sorted(sys.modules)}) + "\n")
    for line in sys.stdin:
        invocation = json.loads(line)
        context = Context(os.environ["AWS_LAMBDA_FUNCTION_NAME"], invocation["remaining_ms"])
        try:
            answer = {"result": handler(invocation["event"], context)}
        except Exception as exc:
            answer = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        sys.stdout.flush()
        results.write(json.dumps(answer, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
