#!/bin/sh
# Remakes the dbt artifacts the run-summary tests read (run_results_*.json here) by running real dbt on
# ./project: dbt-core and dbt-duckdb in a virtual environment of their own (never the project's).
#   sh tests/data/dbt/make_artifacts.sh
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
venv="${DBT_VENV:-${TMPDIR:-/tmp}/bridge-dbt-venv}"
if [ ! -x "$venv/bin/dbt" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'dbt-core~=1.10.0' 'dbt-duckdb~=1.10.0'
fi
cd "$here/project"
# Fails on purpose: order_margins errors (no such column), margin_report is skipped, a not_null test fails,
# a unique test warns.
"$venv/bin/dbt" build --profiles-dir . || true
cp target/run_results.json "$here/run_results_failing.json"
"$venv/bin/dbt" build --profiles-dir . --select stg_orders
cp target/run_results.json "$here/run_results_passing.json"
rm -rf target logs
# The paths of this machine out of the recorded arguments.
for f in "$here"/run_results_*.json; do
  python3 -c 'import sys; p, old = sys.argv[1], sys.argv[2]; t = open(p).read(); open(p, "w").write(t.replace(old, "project"))' "$f" "$here/project"
done
