#!/usr/bin/env bash
# The SAM template lints clean both ways it deploys: outside a VPC (the VPC parameters left
# empty) and inside one (both given). cfn-lint checks every condition's branches; `sam validate
# --lint` adds SAM's own transform of the serverless resources. Neither needs AWS credentials.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=.venv/bin
uri='MongoPoolUri=mongodb+srv://cluster0.xxxxx.mongodb.net/?authSource=%24external'

echo "cfn-lint, no VPC"
"$bin/cfn-lint" template.yaml --parameters "$uri"
echo "cfn-lint, in a VPC"
"$bin/cfn-lint" template.yaml --parameters "$uri" \
  SubnetIds=subnet-0123456789abcdef0,subnet-0fedcba9876543210 SecurityGroupIds=sg-0123456789abcdef0
echo "sam validate --lint"
# sam writes its config and telemetry id under $HOME; keep the run from touching the user's.
home=$(mktemp -d /tmp/mongo-pool-sam-home.XXXXXX)
trap 'rm -rf "$home"' EXIT
HOME=$home SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 "$bin/sam" validate --lint -t template.yaml
echo "template checks passed"
