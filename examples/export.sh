#!/usr/bin/env bash
# Every page of a collection as page-N.ndjson, with curl and jq, the way a careful client
# does it: long-polls (Prefer: wait), honours Retry-After, stops on Failed, checks sha256,
# follows nextCursor.
#
#   BASE=http://127.0.0.1:3000 TOKEN=bes_… examples/export.sh demo users
set -euo pipefail
firm=${1:?firm}; type=${2:?object type}
auth="Authorization: Bearer ${TOKEN:?set TOKEN to a user token}"
base=${BASE:-http://127.0.0.1:3000}
hdr=$(mktemp); trap 'rm -f "$hdr"' EXIT
cursor=null; page=0
while :; do
  page=$((page + 1))
  req=$(curl -sf -X POST -H "$auth" -H 'Content-Type: application/json' -d "{\"cursor\":$cursor}" "$base/api/v1/idm/$firm/$type/export" | jq -r .requestId)
  while status=$(curl -sf -D "$hdr" -H "$auth" -H 'Prefer: wait=30' "$base/api/v1/request/$req"); s=$(jq -r .status <<<"$status"); [ "$s" = Pending ] || [ "$s" = InProgress ]; do
    echo "  $req: $s, $(jq -r .progress.processed <<<"$status") objects written" >&2
    grep -qi '^preference-applied:' "$hdr" || sleep "$(grep -i '^retry-after:' "$hdr" | tr -dc 0-9)"
  done
  if [ "$s" != Completed ]; then
    echo "export $req failed: $(jq -r '.error.message + " (retryable: " + (.error.retryable|tostring) + ")"' <<<"$status")" >&2
    exit 1
  fi
  curl -sf -o "page-$page.ndjson" "$(jq -r .result.fileUrl <<<"$status")"
  [ "$(sha256sum "page-$page.ndjson" | cut -d' ' -f1)" = "$(jq -r .result.sha256 <<<"$status")" ] || { echo "page-$page.ndjson does not match its sha256" >&2; exit 1; }
  echo "page-$page.ndjson: $(jq -r .result.total <<<"$status") objects, verified" >&2
  cursor=$(jq -c .result.nextCursor <<<"$status")
  [ "$cursor" != null ] || exit 0
done
