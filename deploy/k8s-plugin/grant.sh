#!/usr/bin/env bash
# What the plugin's identity needs in the KMS, run once by the key's owner with ckms: the
# key-encryption key (tagged, so that re-keys are followed) and the right to encrypt and decrypt
# with it. Grants move to the new key on every re-key; nothing else is needed.
# usage: deploy/k8s-plugin/grant.sh <plugin user> [tag]
#   plugin user: the name kms-proxy gives the plugin's credential (a client certificate's user,
#   the JWT's user claim; API tokens act as the default user, who owns what they create)
set -euo pipefail
user=${1:?usage: grant.sh <plugin user> [tag]}
tag=${2:-k8s-secrets}
uid=$(ckms --json locate -t "$tag" | python3 -c 'import json,sys; ids=json.load(sys.stdin)["unique_identifiers"]; print(ids[0] if len(ids)==1 else "")')
if [ -z "$uid" ]; then
  uid=$(ckms --json sym keys create -t "$tag" | python3 -c 'import json,sys; print(json.load(sys.stdin)["unique_identifier"])')
  echo "created the key-encryption key $uid (tag $tag)"
fi
ckms access-rights grant "$user" -i "$uid" encrypt decrypt
echo "$user may encrypt and decrypt with $uid; configure the plugin with key_tag = [\"$tag\"]"
