#!/usr/bin/env bash
# Rebuild the web pages' translation catalogues (`make translations`):
#   extract  newsletter/**.py and newsletter/templates/**.html -> newsletter/translations/messages.pot
#   update   every newsletter/translations/<lang>/LC_MESSAGES/messages.po from the template
#   compile  each messages.po -> messages.mo
# New or changed English texts come out untranslated or fuzzy: translate them in the .po
# (and drop the fuzzy flag), then run this again. Exits 1 while any remain.
set -euo pipefail
cd "$(dirname "$0")/.."

PYBABEL=.venv/bin/pybabel
DIR=newsletter/translations
POT="$DIR/messages.pot"
VERSION="$(.venv/bin/python -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"

"$PYBABEL" extract -F babel.cfg -k lazy_gettext --no-wrap --sort-by-file \
  --project="Jobs newsletter" --version="$VERSION" -o "$POT" .
# An empty template (babel.cfg paths not matching) would turn every translation obsolete.
if ! grep -q '^msgid "[^"]' "$POT"; then
  echo "translations: nothing extracted into $POT; check babel.cfg" >&2
  exit 1
fi
"$PYBABEL" update -i "$POT" -d "$DIR" --no-wrap
"$PYBABEL" compile -d "$DIR" --statistics

# Compile skips fuzzy entries and untranslated ones fall back to English: say so.
status=0
for po in "$DIR"/*/LC_MESSAGES/messages.po; do
  if ! .venv/bin/python - "$po" <<'PY'
import sys
from babel.messages.pofile import read_po

path = sys.argv[1]
with open(path, "rb") as fh:
    catalog = read_po(fh)
todo = [m.id for m in catalog if m.id and (m.fuzzy or not m.string)]
for msgid in todo:
    print(f"{path}: untranslated or fuzzy: {msgid!r}", file=sys.stderr)
sys.exit(1 if todo else 0)
PY
  then
    status=1
  fi
done
exit "$status"
