#!/usr/bin/python3
"""The `boto3` client: boto3's default chain (botocore's, which ends with the instance
metadata provider), then sts.get_caller_identity(). The STS endpoint is the first
argument: boto3 1.26 reads no AWS_ENDPOINT_URL_STS (botocore added it in 1.31)."""
import json
import sys

import boto3
import botocore.exceptions

if len(sys.argv) != 2:
    print("usage: imdsh-boto3 STS_ENDPOINT", file=sys.stderr)
    sys.exit(2)
try:
    out = boto3.client("sts", endpoint_url=sys.argv[1]).get_caller_identity()
except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
    # The last line of the traceback an uncaught exception would print.
    print(f"{type(e).__module__}.{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps({k: out[k] for k in ("Arn", "UserId", "Account")}))
