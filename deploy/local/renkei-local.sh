#!/usr/bin/env bash
# Process-level deployment on one machine, without containers: two renkei replicas behind
# nginx terminating TLS 1.3 (client certificates optional), all on loopback. The same shape
# as deploy/compose.yaml, from Debian packages (apt-get install nginx postgresql-client
# redis-server). Each replica also runs the urgent-call worker (its steps are locked).
#
#   deploy/local/renkei-local.sh start   # needs RENKEI_DATABASE_URL (PostgreSQL)
#   deploy/local/renkei-local.sh smoke   # create through the proxy, read on both replicas
#   deploy/local/renkei-local.sh stop
#
# Settings (environment): RENKEI_LOCAL_DIR (state, default ./var/local), RENKEI_LOCAL_TLS_PORT
# (8443), RENKEI_LOCAL_API_PORTS ("8101 8102"), RENKEI_BIN (renkei executable), NGINX (nginx),
# RENKEI_REDIS_URL (redis://127.0.0.1:6379/0: websocket events fan out between replicas through
# Redis; without it they use PostgreSQL LISTEN/NOTIFY).
set -euo pipefail

DIR="${RENKEI_LOCAL_DIR:-./var/local}"
TLS_PORT="${RENKEI_LOCAL_TLS_PORT:-8443}"
read -r -a API_PORTS <<< "${RENKEI_LOCAL_API_PORTS:-8101 8102}"
RENKEI_BIN="${RENKEI_BIN:-$(command -v renkei || echo .venv/bin/renkei)}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"

die() { echo "renkei-local: $*" >&2; exit 1; }

certs() {
  local c="$DIR/certs"
  [[ -f "$c/server.crt" ]] && return 0
  mkdir -p "$c"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=renkei-local-ca" \
    -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$c/server.key" -out "$c/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$c/san.ext"
  openssl x509 -req -in "$c/server.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
    -days 30 -extfile "$c/san.ext" -out "$c/server.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=ehr-client" \
    -keyout "$c/client.key" -out "$c/client.csr" 2>/dev/null
  openssl x509 -req -in "$c/client.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
    -days 30 -out "$c/client.crt" 2>/dev/null
  chmod 600 "$c"/*.key
}

nginx_conf() {
  local abs; abs="$(cd "$DIR" && pwd)"
  local upstreams=""
  for p in "${API_PORTS[@]}"; do upstreams+="        server 127.0.0.1:$p max_fails=1 fail_timeout=2s;"$'\n'; done
  mkdir -p "$abs/nginx/logs" "$abs/nginx/tmp"
  cat > "$abs/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $abs/nginx/nginx.pid;
error_log $abs/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $abs/nginx/tmp/body;
    proxy_temp_path $abs/nginx/tmp/proxy;
    fastcgi_temp_path $abs/nginx/tmp/fastcgi;
    uwsgi_temp_path $abs/nginx/tmp/uwsgi;
    scgi_temp_path $abs/nginx/tmp/scgi;
    log_format renkei '\$remote_addr [\$time_iso8601] "\$request_method \$uri" \$status \$request_time \$request_id';
    access_log $abs/nginx/logs/access.log renkei;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    upstream renkei {
$upstreams    }
    server {
        listen 127.0.0.1:$TLS_PORT ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate $abs/certs/server.crt;
        ssl_certificate_key $abs/certs/server.key;
        ssl_client_certificate $abs/certs/ca.crt;
        ssl_verify_client optional;
        client_max_body_size 20m;
        proxy_set_header Host \$http_host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_set_header X-Request-Id \$request_id;
        proxy_set_header X-Client-Verify \$ssl_client_verify;
        location /ws {
            proxy_pass http://renkei;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Request-Id \$request_id;
            proxy_set_header X-Client-Verify \$ssl_client_verify;
            proxy_read_timeout 1h;
        }
        location / { proxy_pass http://renkei; proxy_http_version 1.1; proxy_next_upstream error timeout; }
    }
}
CONF
}

wait_ready() {
  local url="$1" i
  shift
  for i in $(seq 1 300); do
    curl -fsS "$@" "$url" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$url did not become ready"
}

start() {
  [[ "${RENKEI_DATABASE_URL:-}" == postgresql* ]] || die "RENKEI_DATABASE_URL must point at PostgreSQL"
  [[ -x "$NGINX" ]] || die "nginx not found (apt-get install nginx)"
  mkdir -p "$DIR/logs"
  certs
  "$RENKEI_BIN" migrate --json > "$DIR/logs/migrate.json"
  local fanout="postgres"
  if [[ -n "${RENKEI_REDIS_URL:-}" ]]; then
    [[ "$RENKEI_REDIS_URL" == redis://* || "$RENKEI_REDIS_URL" == rediss://* ]] \
      || die "RENKEI_REDIS_URL must be a redis:// or rediss:// URL"
    fanout="redis"
  fi
  local i=0
  for p in "${API_PORTS[@]}"; do
    i=$((i + 1))
    RENKEI_REPLICA="api-$i" RENKEI_REDIS_URL="${RENKEI_REDIS_URL:-}" \
      nohup "$RENKEI_BIN" serve --host 127.0.0.1 --port "$p" \
      > "$DIR/logs/api-$i.log" 2>&1 &
    echo $! > "$DIR/api-$i.pid"
  done
  for p in "${API_PORTS[@]}"; do wait_ready "http://127.0.0.1:$p/readyz"; done
  nginx_conf
  "$NGINX" -c "$(cd "$DIR" && pwd)/nginx/nginx.conf" -e "$(cd "$DIR" && pwd)/nginx/logs/error.log"
  wait_ready "https://localhost:$TLS_PORT/readyz" --cacert "$DIR/certs/ca.crt"
  echo "renkei-local: https://localhost:$TLS_PORT (replicas on ${API_PORTS[*]}, fan-out: $fanout)"
}

stop() {
  local abs; abs="$(cd "$DIR" 2>/dev/null && pwd)" || return 0
  if [[ -f "$abs/nginx/nginx.pid" ]]; then
    "$NGINX" -c "$abs/nginx/nginx.conf" -s quit 2>/dev/null || kill "$(cat "$abs/nginx/nginx.pid")" 2>/dev/null || true
  fi
  for f in "$abs"/api-*.pid; do
    [[ -f "$f" ]] || continue
    kill -TERM "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

smoke() {
  local ca="$DIR/certs/ca.crt" base="https://localhost:$TLS_PORT"
  local body='{"resourceType":"Organization","name":"スモークテスト診療所"}'
  local created id
  created=$(curl -fsS --tlsv1.3 --cacert "$ca" -X POST "$base/fhir/Organization" \
    -H 'Content-Type: application/fhir+json' ${RENKEI_TOKEN:+-H "Authorization: Bearer $RENKEI_TOKEN"} -d "$body")
  id=$(printf '%s' "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  for p in "${API_PORTS[@]}"; do
    curl -fsS "http://127.0.0.1:$p/fhir/Organization/$id" \
      ${RENKEI_TOKEN:+-H "Authorization: Bearer $RENKEI_TOKEN"} >/dev/null \
      || die "replica on $p cannot read Organization/$id"
  done
  echo "renkei-local: smoke ok (Organization/$id readable on every replica)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  smoke) smoke ;;
  *) die "usage: $0 start|smoke|stop" ;;
esac
