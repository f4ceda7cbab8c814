#!/usr/bin/env bash
# Installs what the test suite needs and is not in go.mod: Debian's Jupyter packages (notebook
# steps), R (R steps), Chromium (UI tests) and versitygw (a real S3 server). Idempotent: a second run
# takes about a second.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

pkgs="python3-nbclient python3-ipykernel python3-nbformat chromium fonts-dejavu-core r-base-core"
missing=""
for p in $pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian packages:$missing"
  $sudo apt-get update -qq
  # Without --no-install-recommends the Jupyter packages pull in ~700 MB (pandoc, scipy, …).
  $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

gobin="$(go env GOPATH)/bin"
if ! go version -m "$gobin/versitygw" 2>/dev/null | grep -q 'versitygw[[:space:]]*v1\.8\.0'; then
  echo "installing versitygw v1.8.0 (about 90 s on a cold cache)"
  go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
