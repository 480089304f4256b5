#!/usr/bin/env bash
# The README's smoke path against a running `scripts/run.sh` (demo data, OTP code 000000):
# mitra logs in, goes online, heartbeats; the customer sees the beacon and requests a chat; the
# mitra's event stream receives the offer; the mitra accepts; capacity shows 1; the chat ends;
# capacity shows 0. Exits non-zero on a mismatch.
set -euo pipefail

PUB="${PUB:-http://127.0.0.1:3000}"
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { curl -sf -X POST "$PUB$1" -H 'Content-Type: application/json' "${@:2}"; }
expect() { [ "$2" = "$3" ] || { echo "FAIL: $1: got $2, want $3" >&2; exit 1; }; echo "ok: $1 = $2"; }

# 1. The mitra logs in by OTP and goes online.
post /api/mitra/auth/otp/request -d '{"phone":"+620000000001"}' >/dev/null
MITRA=$(post /api/mitra/auth/otp/verify -d '{"phone":"+620000000001","code":"000000"}' | field '["access_token"]')
post /api/mitra/status/online -H "Authorization: Bearer $MITRA" >/dev/null
expect heartbeat.is_online "$(post /api/mitra/status/heartbeat -H "Authorization: Bearer $MITRA" | field '["is_online"]')" True

# The mitra app's event stream, held while the customer requests (closed after 5 s).
EVENTS=$(mktemp)
trap 'rm -f "$EVENTS"' EXIT
curl -sN --max-time 5 "$PUB/api/mitra/events" -H "Authorization: Bearer $MITRA" >"$EVENTS" &
STREAM=$!

# 2. The customer sees the beacon and requests a chat (a blast to every available mitra).
expect beacon.available "$(curl -sf "$PUB/public/bestie-availability" | field '["available"]')" True
post /api/client/auth/otp/request -d '{"phone":"+620000000100"}' >/dev/null
CUSTOMER=$(post /api/client/auth/otp/verify -d '{"phone":"+620000000100","code":"000000"}' | field '["access_token"]')
SESSION=$(post /api/client/chat/requests -H "Authorization: Bearer $CUSTOMER" -d '{"minutes":15}' | field '["session_id"]')
wait "$STREAM" || true
# The session of every `offer` frame the stream received (the first state may hold older ones).
offers() { python3 -c 'import json,sys; print(" ".join(json.loads(l[6:])["session_id"] for b in sys.stdin.read().split("\n\n") if "event: offer\n" in b for l in b.splitlines() if l.startswith("data: ")))'; }
case " $(offers <"$EVENTS") " in *" $SESSION "*) OFFERED=yes ;; *) OFFERED=no ;; esac
expect stream.offer "$OFFERED" yes

# 3. The mitra accepts: capacity 1.
post "/api/mitra/chat/requests/$SESSION/accept" -H "Authorization: Bearer $MITRA" >/dev/null
capacity() { curl -sf "$PUB/api/mitra/status" -H "Authorization: Bearer $MITRA" | field '["active_sessions"]'; }
expect active_sessions "$(capacity)" 1

# 4. The customer ends the chat: capacity 0.
expect session.status "$(post "/api/client/chat/sessions/$SESSION/end" -H "Authorization: Bearer $CUSTOMER" | field '["status"]')" ended
expect active_sessions "$(capacity)" 0
