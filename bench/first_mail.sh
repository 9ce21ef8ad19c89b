#!/usr/bin/env bash
# Usage: bash bench/first_mail.sh   (PIP_NO_CACHE_DIR=1 for a cold package cache;
# NEWSLETTER_REDIS_URL=redis://127.0.0.1:6390/0 to force the embedded Redis). Uses port 5000.
# From a fresh clone to the confirmation mail visible in /dev/inbox.
set -u
dir=$(mktemp -d /tmp/fresh-XXXX)
git clone -q "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" "$dir/repo"
cd "$dir/repo"
start=$(date +%s.%N)
( make demo > "$dir/demo.log" 2>&1 & echo $! > "$dir/pid" )
until curl -sf http://127.0.0.1:5000/healthz >/dev/null; do sleep 0.2; done
up=$(date +%s.%N)
curl -sf -d "email=newcomer@example.org" http://127.0.0.1:5000/subscribe >/dev/null
until curl -sf http://127.0.0.1:5000/dev/inbox/ | grep -q 'href="/dev/inbox/[^"/?]*"'; do sleep 0.2; done
done_=$(date +%s.%N)
echo "web up after: $(echo "$up - $start" | bc) s"
echo "confirmation mail in /dev/inbox after: $(echo "$done_ - $start" | bc) s"
pkill -INT -f "newsletter demo" ; sleep 5
rm -rf "$dir"
