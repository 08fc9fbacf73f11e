#!/usr/bin/env bash
# Offline checks of the deployment files with the tools that own their formats (no Docker engine or cluster needed):
#   docker-compose config -q      docker-compose.yml, with and without the gpu profile (Debian's docker-compose 1.29)
#   dockerfilelint                the Dockerfile
#   promtool check config/rules   deploy/prometheus, the PrometheusRule in deploy/k8s, and every Grafana panel query
#   promtool test rules           deploy/prometheus/alerts.test.yml (each alert fires when it should, and only then)
# Tools that are missing are installed first (apt-get, npm), so a fresh machine needs only network access to those
# registries. The metric-name, port and probe checks live in the .NET tests (tests/StrapVit.Api.Tests/Deployment).
# Exit status: 0 when every check passes; a tool that cannot be installed counts as a failure, never as a skip.
set -uo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

failures=0
pass() { echo "deploy-check: ok    $*"; }
fail() { echo "deploy-check: FAIL  $*"; failures=$((failures + 1)); }

retry() {
    local n
    for n in 1 2 3; do
        "$@" && return 0
        echo "deploy-check: '$*' failed (try $n of 3)" >&2
        sleep $((n * 5))
    done
    return 1
}

apt_updated=0
need_apt() { # need_apt COMMAND PACKAGE
    command -v "$1" > /dev/null && return 0
    if [[ $apt_updated == 0 ]]; then
        retry apt-get update -qq || return 1
        apt_updated=1
    fi
    retry apt-get install -y -qq --no-install-recommends "$2" > /dev/null
    command -v "$1" > /dev/null
}

need_apt docker-compose docker-compose || fail "could not install docker-compose"
need_apt promtool prometheus || fail "could not install promtool (Debian package prometheus)"
if ! command -v dockerfilelint > /dev/null; then
    retry npm install -g --silent dockerfilelint@1.8.0 > /dev/null
    command -v dockerfilelint > /dev/null || fail "could not install dockerfilelint"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- docker-compose -------------------------------------------------------------------------------------------------
if command -v docker-compose > /dev/null; then
    if docker-compose config -q; then pass "docker-compose config"; else fail "docker-compose config"; fi
    if docker-compose --profile gpu config -q; then pass "docker-compose --profile gpu config"; else fail "docker-compose --profile gpu config"; fi
fi

# --- dockerfilelint ---------------------------------------------------------------------------------------------------
# dockerfilelint 1.8.0 reads HEALTHCHECK options with /--\w+/, so the valid --start-period (Docker 17.05+) looks like an
# unknown option "--start"; that one finding is waived, any other fails.
if command -v dockerfilelint > /dev/null; then
    dockerfilelint -o json Dockerfile > "$work/lint.json"
    if node -e '
        const report = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        const issues = report.files.flatMap(f => f.issues);
        const waived = i => i.title === "Invalid Argument Format" && /^HEALTHCHECK .*--start-period=/.test(i.content || "");
        const real = issues.filter(i => !waived(i));
        for (const i of real) console.log(`  line ${i.line}: ${i.category}: ${i.title}: ${i.description}`);
        console.log(`  ${issues.length - real.length} waived (HEALTHCHECK --start-period), ${real.length} to fix`);
        process.exit(real.length === 0 ? 0 : 1);' "$work/lint.json"; then
        pass "dockerfilelint"
    else
        fail "dockerfilelint"
    fi
fi

# --- promtool ---------------------------------------------------------------------------------------------------------
if command -v promtool > /dev/null; then
    # The config names its rule file by the path inside the container; check it beside a copy of that file.
    cp deploy/prometheus/alerts.yml "$work/alerts.yml"
    sed "s#/etc/prometheus/alerts.yml#$work/alerts.yml#" deploy/prometheus/prometheus.yml > "$work/prometheus.yml"
    if promtool check config "$work/prometheus.yml" > "$work/out" 2>&1; then pass "promtool check config deploy/prometheus/prometheus.yml"
    else cat "$work/out"; fail "promtool check config deploy/prometheus/prometheus.yml"; fi

    # The PrometheusRule's spec is a rule file one level deeper.
    sed -n '/^spec:/,$p' deploy/k8s/base/prometheusrule.yaml | tail -n +2 | sed 's/^  //' > "$work/operator-rules.yml"
    check_rules() { # check_rules FILE NAME
        if promtool check rules "$1" > "$work/out" 2>&1; then pass "promtool check rules $2"
        else cat "$work/out"; fail "promtool check rules $2"; fi
    }
    check_rules deploy/prometheus/alerts.yml deploy/prometheus/alerts.yml
    # Alert unit tests: each alert fires on the series that should trigger it, after its `for:`, and not otherwise.
    if (cd deploy/prometheus && promtool test rules alerts.test.yml) > "$work/out" 2>&1; then pass "promtool test rules deploy/prometheus/alerts.test.yml"
    else cat "$work/out"; fail "promtool test rules deploy/prometheus/alerts.test.yml"; fi
    check_rules "$work/operator-rules.yml" deploy/k8s/base/prometheusrule.yaml

    # Grafana queries: each becomes a recording rule, with Grafana's variables replaced by plain values.
    node -e '
        const fs = require("fs");
        const lines = ["groups:", "  - name: grafana", "    rules:"];
        let n = 0;
        for (const file of fs.readdirSync("deploy/grafana/dashboards").filter(f => f.endsWith(".json"))) {
            const walk = p => { for (const t of p.targets || []) if (t.expr) {
                const expr = t.expr.replace(/\$__rate_interval|\$__interval|\$__range/g, "5m").replace(/\$\{?\w+\}?/g, ".*");
                lines.push(`      - record: grafana:query_${++n}`, `        expr: ${JSON.stringify(expr)}`); }
                (p.panels || []).forEach(walk); };
            walk(JSON.parse(fs.readFileSync(`deploy/grafana/dashboards/${file}`, "utf8")));
        }
        fs.writeFileSync(process.argv[1], lines.join("\n") + "\n");
        console.log(`  ${n} dashboard queries`);' "$work/dashboard-rules.yml"
    if promtool check rules "$work/dashboard-rules.yml" > "$work/out" 2>&1; then pass "promtool: Grafana dashboard queries parse"
    else cat "$work/out"; fail "promtool: Grafana dashboard queries parse"; fi
fi

if [[ $failures -eq 0 ]]; then
    echo "deploy-check: all passed"
else
    echo "deploy-check: $failures failed"
fi
exit $((failures > 0 ? 1 : 0))
