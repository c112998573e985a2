#!/usr/bin/env bash
# Every page of a collection as page-N.ndjson, with curl and jq, the way a careful client
# does it: retries 429 and 5xx after Retry-After, waits out the user's active job on a
# 409, long-polls (Prefer: wait), stops on Failed, checks sha256, follows nextCursor.
#
#   BASE=http://127.0.0.1:3000 TOKEN=bes_… examples/export.sh demo users
set -euo pipefail
firm=${1:?firm}; type=${2:?object type}
auth="Authorization: Bearer ${TOKEN:?set TOKEN to a user token}"
base=${BASE:-http://127.0.0.1:3000}
hdr=$(mktemp); body=$(mktemp); trap 'rm -f "$hdr" "$body"' EXIT

# call METHOD URL [curl args…]: the answer's body on stdout; retried on 429 and 5xx after
# Retry-After (or 2 s); any other error status stops the script with the server's detail.
call () {
  local method=$1 url=$2 code; shift 2
  for attempt in 1 2 3 4 5 6 7 8; do
    code=$(curl -s -X "$method" -D "$hdr" -o "$body" -w '%{http_code}' -H "$auth" "$@" "$url") || code=000
    case $code in
      2??) cat "$body"; return 0 ;;
      409) cat "$body"; return 0 ;;
      429|5??|000) sleep "$(grep -i '^retry-after:' "$hdr" | tr -dc 0-9 | grep . || echo 2)" ;;
      *) echo "$method $url: $code $(jq -r '.detail // empty' "$body" 2>/dev/null)" >&2; exit 1 ;;
    esac
  done
  echo "$method $url: still $code after 8 attempts" >&2; exit 1
}

cursor=null; page=0
while :; do
  page=$((page + 1))
  started=$(call POST "$base/api/v1/idm/$firm/$type/export" -H 'Content-Type: application/json' -d "{\"cursor\":$cursor}")
  if [ "$(jq -r .code <<<"$started")" = EXPORT_ALREADY_ACTIVE ]; then
    # Another export of this user runs: wait for it to end, then start this page.
    active=$(jq -r .activeRequestId <<<"$started")
    echo "  waiting for the active export $active" >&2
    until [[ "$(call GET "$base/api/v1/request/$active" -H 'Prefer: wait=30' | jq -r .status)" =~ Completed|Failed ]]; do :; done
    page=$((page - 1)); continue
  fi
  req=$(jq -r .requestId <<<"$started")
  while status=$(call GET "$base/api/v1/request/$req" -H 'Prefer: wait=30'); s=$(jq -r .status <<<"$status"); [ "$s" = Pending ] || [ "$s" = InProgress ]; do
    echo "  $req: $s, $(jq -r .progress.processed <<<"$status") objects written" >&2
    grep -qi '^preference-applied:' "$hdr" || sleep "$(grep -i '^retry-after:' "$hdr" | tr -dc 0-9 | grep . || echo 1)"
  done
  if [ "$s" != Completed ]; then
    echo "export $req failed: $(jq -r '.error.message + " (retryable: " + (.error.retryable|tostring) + ")"' <<<"$status")" >&2
    exit 1
  fi
  curl -sf --retry 5 -o "page-$page.ndjson" "$(jq -r .result.fileUrl <<<"$status")"
  [ "$(sha256sum "page-$page.ndjson" | cut -d' ' -f1)" = "$(jq -r .result.sha256 <<<"$status")" ] || { echo "page-$page.ndjson does not match its sha256: remove it and run again" >&2; exit 1; }
  echo "page-$page.ndjson: $(jq -r .result.total <<<"$status") objects, verified" >&2
  cursor=$(jq -c .result.nextCursor <<<"$status")
  [ "$cursor" != null ] || exit 0
done
