#!/usr/bin/env bash
# Self-test for the Palisade test IdP (tests/idp/idp.mjs).
# Installs the locked dependencies, starts the IdP on a free loopback port with
# an issuer that is not its listening URL, fetches tokens for every client,
# decodes and verifies them, rotates keys, and stops the IdP.
# Exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

ISSUER="https://idp.local/auth/realms/ML"
WORK="$(mktemp -d)"
IDP_PID=""

fail() { echo "FAIL: $*" >&2; [[ -s "$WORK/stderr" ]] && { echo "--- idp stderr ---" >&2; tail -n 30 "$WORK/stderr" >&2; }; exit 1; }
ok() { echo "ok   $*"; }

cleanup() {
  if [[ -n "$IDP_PID" ]] && kill -0 "$IDP_PID" 2>/dev/null; then
    kill -TERM "$IDP_PID" 2>/dev/null || true
    wait "$IDP_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v node >/dev/null || fail "node not found"
command -v curl >/dev/null || fail "curl not found"

# 1. dependencies, exactly as locked
npm ci --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1 || { cat "$WORK/npm.log" >&2; fail "npm ci"; }
ok "npm ci"

# 2. start on port 0 with a non-loopback issuer
node idp.mjs --port 0 --issuer "$ISSUER" >"$WORK/stdout" 2>"$WORK/stderr" &
IDP_PID=$!
for _ in $(seq 1 100); do
  [[ -s "$WORK/stdout" ]] && break
  kill -0 "$IDP_PID" 2>/dev/null || fail "idp exited early"
  sleep 0.1
done
[[ -s "$WORK/stdout" ]] || fail "no ready line within 10 s"
sleep 0.2
[[ "$(wc -l <"$WORK/stdout")" -eq 1 ]] || fail "stdout must hold exactly one line, got: $(cat "$WORK/stdout")"

# js JSON_DOC EXPR: evaluate EXPR with `d` bound to the parsed document
js() { node -e 'const d = JSON.parse(process.argv[1]); const r = (0, eval)(`(d) => (${process.argv[2]})`)(d); process.stdout.write(typeof r === "string" ? r : JSON.stringify(r));' "$1" "$2"; }

READY="$(cat "$WORK/stdout")"
echo "ready line: $READY"
URL="$(js "$READY" 'd.url')"
[[ "$(js "$READY" 'Object.keys(d).sort().join(",")')" == "issuer,jwks_uri,token_endpoint,url" ]] || fail "ready line keys"
[[ "$(js "$READY" 'd.issuer')" == "$ISSUER" ]] || fail "ready issuer"
[[ "$URL" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || fail "ready url: $URL"
[[ "$(js "$READY" 'd.jwks_uri')" == "$URL/jwks" ]] || fail "ready jwks_uri"
[[ "$(js "$READY" 'd.token_endpoint')" == "$URL/token" ]] || fail "ready token_endpoint"
ok "ready line"

# 3. discovery names the configured issuer (root and under the issuer path)
for p in /.well-known/openid-configuration /auth/realms/ML/.well-known/openid-configuration; do
  DISC="$(curl -sf "$URL$p")" || fail "GET $p"
  [[ "$(js "$DISC" 'd.issuer')" == "$ISSUER" ]] || fail "discovery issuer at $p"
done
ok "discovery issuer"

# token CLIENT [curl args...]: prints the access token (basic auth unless --post)
token() {
  local client="$1"; shift
  local auth=(-u "$client:$client-secret")
  if [[ "${1:-}" == "--post" ]]; then shift; auth=(-d "client_id=$client" -d "client_secret=$client-secret"); fi
  local body
  body="$(curl -s -w '\n%{http_code}' "${auth[@]}" -d grant_type=client_credentials "$@" "$URL/token")"
  local code="${body##*$'\n'}"; body="${body%$'\n'*}"
  [[ "$code" == 200 ]] || fail "token for $client ($*): HTTP $code $body"
  js "$body" 'd.access_token'
}

# check TOKEN EXPECT_JSON: decode header+payload (base64url), verify the
# signature against the current /jwks, compare expected header/payload fields.
check() {
  local jwks; jwks="$(curl -sf "$URL/jwks")" || fail "GET /jwks"
  node - "$1" "$2" "$jwks" <<'EOF' || exit 1
const crypto = require('node:crypto');
const [tok, expectJson, jwksJson] = process.argv.slice(2);
const exp = JSON.parse(expectJson);
const die = (m) => { console.error(`FAIL: ${m}`); process.exit(1); };
const parts = tok.split('.');
if (parts.length !== 3) die('token is not a JWS');
const dec = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
const header = dec(parts[0]);
const payload = dec(parts[1]);
if (header.typ !== 'at+jwt') die(`typ ${header.typ}`);
if (header.alg !== exp.alg) die(`alg ${header.alg} != ${exp.alg}`);
if (exp.kid && header.kid !== exp.kid) die(`kid ${header.kid} != ${exp.kid}`);
const jwk = JSON.parse(jwksJson).keys.find((k) => k.kid === header.kid);
if (!jwk) die(`kid ${header.kid} not in /jwks`);
if (jwk.d || jwk.p) die('private key material in /jwks');
const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
const sig = Buffer.from(parts[2], 'base64url');
const good = header.alg === 'ES256'
  ? crypto.verify('sha256', signed, { key, dsaEncoding: 'ieee-p1363' }, sig)
  : crypto.verify('sha256', signed, key, sig);
if (!good) die('signature does not verify');
for (const c of ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id']) {
  if (payload[c] === undefined) die(`missing claim ${c}`);
}
if (payload.sub !== payload.client_id) die('sub != client_id');
if (payload.exp - payload.iat !== exp.ttl) die(`lifetime ${payload.exp - payload.iat} != ${exp.ttl}`);
for (const [k, v] of Object.entries(exp.claims)) {
  if (JSON.stringify(payload[k]) !== JSON.stringify(v)) die(`claim ${k}: ${JSON.stringify(payload[k])} != ${JSON.stringify(v)}`);
}
for (const k of exp.absent || []) if (k in payload) die(`claim ${k} should be absent`);
process.stdout.write(header.kid);
EOF
}

kid_of() { node -e 'process.stdout.write(JSON.parse(Buffer.from(process.argv[1].split(".")[0], "base64url")).kid)' "$1"; }

base() { printf '{"iss":"%s","aud":"ml","sub":"%s","client_id":"%s"}' "$ISSUER" "$1" "$1"; }
merge() { node -e 'process.stdout.write(JSON.stringify(Object.assign({}, ...process.argv.slice(1).map(JSON.parse))))' "$@"; }

# 4. one token per client, checked
ABSENT_PERSON='["email","email_verified","groups","scope"]'
T="$(token ml-rs256 -d resource=urn:ml)"; check "$T" \
  "{\"alg\":\"RS256\",\"ttl\":600,\"claims\":$(base ml-rs256),\"absent\":$ABSENT_PERSON}" >/dev/null
ok "ml-rs256 (basic, resource=urn:ml)"
T="$(token ml-es256 --post)"; check "$T" \
  "{\"alg\":\"ES256\",\"ttl\":600,\"claims\":$(base ml-es256),\"absent\":$ABSENT_PERSON}" >/dev/null
ok "ml-es256 (post, default resource)"
T="$(token ml-person-a -d scope=predict)"; check "$T" \
  "{\"alg\":\"RS256\",\"ttl\":600,\"claims\":$(merge "$(base ml-person-a)" '{"scope":"predict","email":"person_a@company.com","email_verified":true,"groups":["fraud-analysts"]}')}" >/dev/null
ok "ml-person-a (scope=predict)"
T="$(token ml-person-c --post -d 'scope=predict admin')"; check "$T" \
  "{\"alg\":\"RS256\",\"ttl\":600,\"claims\":$(merge "$(base ml-person-c)" '{"scope":"predict admin","email":"person_c@company.com","email_verified":true,"groups":["marketing"]}')}" >/dev/null
ok "ml-person-c (post, scope=predict admin)"
T="$(token ml-unverified)"; check "$T" \
  "{\"alg\":\"RS256\",\"ttl\":600,\"claims\":$(merge "$(base ml-unverified)" '{"email":"person_a@company.com","email_verified":false}'),\"absent\":[\"groups\"]}" >/dev/null
ok "ml-unverified"

# 5. audience mapping, ttl override, rejected requests
T="$(token ml-rs256 -d resource=urn:other)"; check "$T" \
  "{\"alg\":\"RS256\",\"ttl\":600,\"claims\":$(merge "$(base ml-rs256)" '{"aud":"other"}')}" >/dev/null
ok "resource=urn:other -> aud other"
T="$(token ml-es256 -d resource=https://api.example/ml -d ttl=5)"; check "$T" \
  "{\"alg\":\"ES256\",\"ttl\":5,\"claims\":$(merge "$(base ml-es256)" '{"aud":"https://api.example/ml"}')}" >/dev/null
ok "absolute URI resource -> same aud; ttl=5"
code="$(curl -s -o /dev/null -w '%{http_code}' -u ml-rs256:wrong -d grant_type=client_credentials "$URL/token")"
[[ "$code" == 401 ]] || fail "wrong secret gave HTTP $code"
code="$(curl -s -o /dev/null -w '%{http_code}' -u ml-rs256:ml-rs256-secret -d grant_type=client_credentials -d resource=ml "$URL/token")"
[[ "$code" == 400 ]] || fail "relative resource gave HTTP $code"
ok "wrong secret 401, relative resource 400"
# scopes the resource server does not offer are dropped silently, not rejected
T="$(token ml-rs256 -d 'scope=root predict')"; check "$T" \
  "{\"alg\":\"RS256\",\"ttl\":600,\"claims\":$(merge "$(base ml-rs256)" '{"scope":"predict"}')}" >/dev/null
ok "unknown scope dropped"

# 6. JWKS fetch counter
curl -sf -X POST "$URL/test/reset-counters" >/dev/null || fail "reset-counters"
curl -sf "$URL/jwks" >/dev/null; curl -sf "$URL/jwks" >/dev/null
[[ "$(js "$(curl -sf "$URL/test/jwks-fetches")" 'String(d.count)')" == 2 ]] || fail "jwks-fetches != 2"
ok "jwks fetch counter"

# 7. rotation: new RSA key signs new RS256 tokens; old keys stay published
T="$(token ml-rs256)"; OLD_RS="$(kid_of "$T")"
T="$(token ml-es256)"; OLD_ES="$(kid_of "$T")"
ROT="$(curl -sf -X POST "$URL/test/rotate?kty=RSA")" || fail "rotate RSA"
NEW_RS="$(js "$ROT" 'd.kid')"
[[ -n "$NEW_RS" && "$NEW_RS" != "$OLD_RS" ]] || fail "rotate returned kid '$NEW_RS' (old $OLD_RS)"
T="$(token ml-person-a)"; check "$T" \
  "{\"alg\":\"RS256\",\"kid\":\"$NEW_RS\",\"ttl\":600,\"claims\":$(merge "$(base ml-person-a)" '{"groups":["fraud-analysts"]}')}" >/dev/null
T="$(token ml-es256)"; [[ "$(kid_of "$T")" == "$OLD_ES" ]] || fail "ES256 kid changed on RSA rotation"
JWKS="$(curl -sf "$URL/jwks")"
[[ "$(js "$JWKS" "d.keys.map(k => k.kid).join(' ')")" == "$NEW_RS $OLD_RS $OLD_ES" ]] || fail "jwks after RSA rotation: $(js "$JWKS" "d.keys.map(k => k.kid).join(' ')")"
ROT="$(curl -sf -X POST "$URL/test/rotate?kty=EC")" || fail "rotate EC"
NEW_ES="$(js "$ROT" 'd.kid')"
T="$(token ml-es256)"; check "$T" \
  "{\"alg\":\"ES256\",\"kid\":\"$NEW_ES\",\"ttl\":600,\"claims\":$(base ml-es256)}" >/dev/null
[[ "$(js "$(curl -sf "$URL/.well-known/openid-configuration")" 'd.issuer')" == "$ISSUER" ]] || fail "issuer after rotation"
ok "rotation (RSA $OLD_RS -> $NEW_RS, EC $OLD_ES -> $NEW_ES), old keys still published"

# 8. simulated outage
curl -sf -X POST "$URL/test/down?seconds=30" >/dev/null || fail "test/down"
code="$(curl -s -o /dev/null -w '%{http_code}' "$URL/jwks")"
[[ "$code" == 503 ]] || fail "/jwks during outage gave HTTP $code"
token ml-rs256 >/dev/null
curl -sf -X POST "$URL/test/up" >/dev/null || fail "test/up"
curl -sf "$URL/jwks" >/dev/null || fail "/jwks after outage"
ok "outage: /jwks 503, token endpoint still up, recovered"

# 9. clean SIGTERM exit
kill -TERM "$IDP_PID"
for _ in $(seq 1 50); do kill -0 "$IDP_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$IDP_PID" 2>/dev/null && fail "idp still running 5 s after SIGTERM"
rc=0; wait "$IDP_PID" || rc=$?
IDP_PID=""
[[ "$rc" == 0 ]] || fail "idp exit status $rc after SIGTERM"
[[ "$(wc -l <"$WORK/stdout")" -eq 1 ]] || fail "idp wrote more than the ready line to stdout"
ok "SIGTERM -> exit 0"

echo "PASS"
