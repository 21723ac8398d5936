#!/usr/bin/env bash
# Local S3 API server: S3Proxy (https://github.com/gaul/s3proxy) on a filesystem backend, run
# from its self-contained jar that Maven fetches into a git-ignored cache. No Docker needed.
#
#   ops/s3/s3proxy.sh up       fetch the jar (once), start, wait until it answers HTTP, then
#                              print the client settings as `export` lines on stdout:
#                              eval "$(ops/s3/s3proxy.sh up)"
#   ops/s3/s3proxy.sh down     stop the server this script started (recorded pid), cleanly
#   ops/s3/s3proxy.sh status   say whether it is up
#   ops/s3/s3proxy.sh fetch    only fetch the jar
#
# Settings (environment):
#   S3PROXY_PORT           HTTP port on 127.0.0.1                       (default 9000)
#   S3PROXY_DATA_DIR       s3proxy.conf, pid, log; the buckets under buckets/
#                                                               (default .cache/s3proxy/data)
#   S3PROXY_HEAP_OPTS      JVM heap                                      (default -Xmx256m)
#   S3PROXY_OPTS           extra JVM options
#   S3PROXY_IDENTITY       access key id                                 (default modelmeter)
#   S3PROXY_CREDENTIAL     secret access key                      (default modelmeter-secret)
#   S3PROXY_BUCKET         a bucket to create at `up` (optional; a directory under buckets/,
#                          which the filesystem backends serve as a bucket)
#   S3PROXY_PROVIDER       jclouds backend: filesystem-nio2 or filesystem (default
#                          filesystem-nio2: the older "filesystem" lists every directory under
#                          a prefix as a 4096-byte object "dir/", which breaks pyarrow's
#                          dataset discovery; filesystem-nio2 lists only the files, like S3)
#   S3PROXY_START_TIMEOUT  seconds to wait for readiness                 (default 60)
#
# The default identity/credential are a LOCAL TEST credential for a server that listens on
# 127.0.0.1 only: not a secret, never for a shared or remote store. Even so, the credential is
# never written to the log lines (stderr): only to s3proxy.conf (mode 600) and to the `export`
# lines that `up` prints on stdout on purpose, for `eval`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
s3proxy_version="$(sed -n 's:.*<s3proxy.version>\(.*\)</s3proxy.version>.*:\1:p' "$here/pom.xml")"
cache="${MODELMETER_CACHE:-$root/.cache}"
lib="$cache/s3proxy/lib-$s3proxy_version"
jar="$lib/s3proxy-$s3proxy_version-jar-with-dependencies.jar"
port="${S3PROXY_PORT:-9000}"
data="${S3PROXY_DATA_DIR:-$cache/s3proxy/data}"
buckets="$data/buckets"
pidfile="$data/s3proxy.pid"
logfile="$data/s3proxy.log"
conf="$data/s3proxy.conf"
identity="${S3PROXY_IDENTITY:-modelmeter}"
credential="${S3PROXY_CREDENTIAL:-modelmeter-secret}"
bucket="${S3PROXY_BUCKET:-}"
provider="${S3PROXY_PROVIDER:-filesystem-nio2}"
timeout="${S3PROXY_START_TIMEOUT:-60}"

die() { echo "s3proxy.sh: error: $*" >&2; exit 2; }
say() { echo "s3proxy.sh: $*" >&2; }

need_java() {
  command -v java >/dev/null 2>&1 || die "Java 17+ is required to run the local S3 server; install a JDK 17 or newer (e.g. apt-get install openjdk-17-jre-headless)"
  local v
  v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "Java 17+ is required, found Java ${v:-unknown}; install a JDK 17 or newer"
}

check_settings() {
  [ -n "$s3proxy_version" ] || die "no <s3proxy.version> in $here/pom.xml"
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
    || die "S3PROXY_PORT=$port is not a port number"
  [[ "$timeout" =~ ^[0-9]+$ ]] || die "S3PROXY_START_TIMEOUT=$timeout is not a number of seconds"
  [ -n "$identity" ] && [ -n "$credential" ] || die "S3PROXY_IDENTITY and S3PROXY_CREDENTIAL must not be empty"
  [[ "$identity$credential" != *[$'\n\r']* ]] || die "S3PROXY_IDENTITY and S3PROXY_CREDENTIAL must be one line each"
  case "$provider" in
    filesystem|filesystem-nio2) ;;
    *) die "S3PROXY_PROVIDER=$provider: use filesystem-nio2 or filesystem" ;;
  esac
  if [ -n "$bucket" ]; then
    # S3 bucket naming rules (this also keeps the directory name inside buckets/)
    [[ "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ && "$bucket" != *..* ]] \
      || die "S3PROXY_BUCKET=$bucket is not a valid bucket name (3-63 of a-z 0-9 . -)"
  fi
}

fetch() {
  [ -f "$lib/.complete" ] && return 0
  command -v mvn >/dev/null 2>&1 || die "Maven is required to fetch the S3Proxy $s3proxy_version jar; install it (e.g. apt-get install maven)"
  mkdir -p "$cache/s3proxy"
  # one fetch at a time (pytest-xdist workers all start a server); the others wait, then find it
  exec 8>"$cache/s3proxy/.fetch.lock"
  flock 8
  if [ -f "$lib/.complete" ]; then exec 8>&-; return 0; fi
  say "fetching S3Proxy $s3proxy_version with Maven into $lib (once)"
  local tmp="$lib.partial.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$tmp.log" 2>&1; then
    tail -n 20 "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "Maven could not fetch the S3Proxy jar (see the lines above)"
  fi
  rm -f "$tmp.log"
  [ -f "$tmp/${jar##*/}" ] || { rm -rf "$tmp"; die "Maven did not produce ${jar##*/}"; }
  touch "$tmp/.complete"
  rm -rf "$lib"; mv "$tmp" "$lib"
  exec 8>&-
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# true once something on the port answers an HTTP request with a status line (S3Proxy: 403)
answers_http() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
    IFS= read -r -t 2 line <&3 || exit 1
    [[ "$line" == HTTP/1.[01]\ [0-9][0-9][0-9]* ]]
  ) 2>/dev/null
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # a recycled pid must be our java process
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-jar $jar --properties $conf" || return 1
  echo "$pid"
}

write_conf() {
  mkdir -p "$buckets"
  # the credential is in this file: readable by its owner only
  (
    umask 077
    cat >"$conf.tmp" <<CONF
# generated by ops/s3/s3proxy.sh - edits are overwritten
s3proxy.endpoint=http://127.0.0.1:$port
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$identity
s3proxy.credential=$credential
jclouds.provider=$provider
jclouds.filesystem.basedir=$buckets
# unused by the filesystem backends, but filesystem-nio2 requires them
jclouds.identity=$identity
jclouds.credential=$credential
CONF
  )
  mv -f "$conf.tmp" "$conf"
}

client_env() {
  local k v
  while IFS='=' read -r k v; do
    printf 'export %s=%q\n' "$k" "$v"
  done <<ENV
AWS_ENDPOINT_URL=http://127.0.0.1:$port
AWS_ACCESS_KEY_ID=$identity
AWS_SECRET_ACCESS_KEY=$credential
AWS_REGION=us-east-1
AWS_DEFAULT_REGION=us-east-1
AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED
AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_REQUIRED
ENV
}

make_bucket() {
  [ -n "$bucket" ] || return 0
  if [ ! -d "$buckets/$bucket" ]; then
    mkdir -p "$buckets/$bucket"
    say "created bucket $bucket"
  fi
}

up() {
  check_settings
  need_java
  local pid
  if pid="$(running_pid)"; then
    make_bucket
    say "already up on http://127.0.0.1:$port (pid $pid)"
    client_env
    return 0
  fi
  port_open "$port" && die "port $port is already in use by another process; set S3PROXY_PORT"
  fetch
  write_conf
  make_bucket
  say "starting S3Proxy $s3proxy_version on http://127.0.0.1:$port ($provider backend, buckets in $buckets)"
  # setsid: the server outlives the calling shell (make, pytest) until 'down'
  # shellcheck disable=SC2086
  setsid nohup bash -c 'exec "$@"' _ java ${S3PROXY_HEAP_OPTS:--Xmx256m} ${S3PROXY_OPTS:-} \
    -jar "$jar" --properties "$conf" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  pid="$(cat "$pidfile")"
  local waited=0
  until answers_http "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$logfile" >&2
      rm -f "$pidfile"
      die "S3Proxy exited during start-up (log: $logfile)"
    fi
    if [ "$waited" -ge $((timeout * 5)) ]; then
      tail -n 30 "$logfile" >&2
      die "S3Proxy did not answer HTTP within ${timeout}s (log: $logfile; still running as pid $pid: run 'down')"
    fi
    sleep 0.2; waited=$((waited + 1))
  done
  say "up on http://127.0.0.1:$port (pid $pid, log $logfile)"
  client_env
}

down() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$pidfile"
    say "not running (no live server recorded in $pidfile)"
    return 0
  fi
  say "stopping S3Proxy pid $pid"
  kill -TERM "$pid"
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "stopped"; return 0; }
    sleep 0.2
  done
  say "S3Proxy did not stop within 30s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

status() {
  local pid
  if pid="$(running_pid)"; then echo "up on http://127.0.0.1:$port (pid $pid)"; else echo "down"; return 1; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  fetch) check_settings; need_java; fetch ;;
  *) echo "usage: $0 up|down|status|fetch" >&2; exit 2 ;;
esac
