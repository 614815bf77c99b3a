#!/usr/bin/env bash
# Build the documentation: HTML pages, then every example executed
# (sphinx.ext.doctest), warnings as errors. Output: OUT/html (default
# _build/docs/html). Needs the docs extra: pip install '.[docs]' (and
# '.[integrations]' for the integrations pages), and the extension built.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-_build/docs}"
python3 -m sphinx -W --keep-going -q -b html docs "$out/html"
python3 -m sphinx -W --keep-going -q -b doctest docs "$out/doctest"
tail -4 "$out/doctest/output.txt"
echo "docs: $out/html/index.html"
