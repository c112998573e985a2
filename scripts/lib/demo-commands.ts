/**
 * The shell commands the demo prints: a whole export, page by page, the way a careful
 * client does it, written for bash with curl and node (no jq needed). A test runs them.
 */

/** `j FIELD` prints a field of the JSON on stdin (nested with dots; objects as JSON, null as nothing). */
const J = 'j () { node -e \'let s="";process.stdin.on("data",(d)=>{s+=d}).on("end",()=>{const v=process.argv[1].split(".").reduce((o,k)=>o==null?o:o[k],JSON.parse(s));console.log(v==null?"":typeof v==="object"?JSON.stringify(v):v)})\' "$1"; }'
/** `sha FILE` prints the file's SHA-256 (hex). */
const SHA = 'sha () { node -e \'process.stdout.write(require("crypto").createHash("sha256").update(require("fs").readFileSync(process.argv[1])).digest("hex"))\' "$1"; }'

/**
 * `export_all FIRM TYPE` writes every page of a collection as page-N.ndjson in the current
 * directory. For each page it starts a job (the previous page's nextCursor in the body),
 * waits for it with long-polls (Prefer: wait=30; when the server did not hold the
 * request, it sleeps Retry-After), stops on Failed with the job's message, downloads the
 * file and checks its SHA-256 against the status. Needs TOKEN and BASE.
 */
export const EXPORT_ALL = `${J}
${SHA}
export_all () {
  local cursor=null page=0 req status s hdr
  hdr=$(mktemp)
  while :; do
    page=$((page + 1))
    req=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "{\\"cursor\\":$cursor}" "$BASE/api/v1/idm/$1/$2/export" | j requestId)
    [ -n "$req" ] || { echo "could not start the export (is the token right? GET $BASE/api/v1/requests shows an active one)"; return 1; }
    while status=$(curl -s -D "$hdr" -H "Authorization: Bearer $TOKEN" -H 'Prefer: wait=30' "$BASE/api/v1/request/$req"); s=$(echo "$status" | j status); [ "$s" = Pending ] || [ "$s" = InProgress ]; do
      echo "  $req: $s, $(echo "$status" | j progress.processed) objects written"
      grep -qi '^preference-applied:' "$hdr" || sleep "$(grep -i '^retry-after:' "$hdr" | tr -dc 0-9)"
    done
    [ "$s" = Completed ] || { echo "export $req failed: $(echo "$status" | j error.message) (retryable: $(echo "$status" | j error.retryable))"; return 1; }
    curl -s -o "page-$page.ndjson" "$(echo "$status" | j result.fileUrl)"
    [ "$(sha "page-$page.ndjson")" = "$(echo "$status" | j result.sha256)" ] || { echo "page-$page.ndjson does not match its sha256: download it again"; return 1; }
    echo "page-$page.ndjson: $(echo "$status" | j result.total) objects, sha256 verified, about $(echo "$status" | j result.remaining) to go"
    cursor=$(echo "$status" | j result.nextCursor)
    [ -n "$cursor" ] || { rm -f "$hdr"; return 0; }
    cursor="\\"$cursor\\""
  done
}`
