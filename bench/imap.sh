#!/usr/bin/env bash
# bench/imap.sh — IMAP, correio side by side with Dovecot (`make bench-imap`).
#
# One run, loopback only (127.0.0.1):
#   1. installs Dovecot (dovecot-imapd) when missing, and leaves the system's own
#      Dovecot service stopped; builds the load generator bench/imap_load.c (cc -O2);
#   2. correio: `correio init` in a scratch folder, one account u@bench.test, `serve`;
#   3. Dovecot: a private instance (own base_dir, config, passwd-file, Maildir, log)
#      on 127.0.0.1;
#   4. against each, one server at a time, the same work:
#        - APPEND of the same 10,000 generated messages (fixed seed; 2-20 KiB,
#          30% multipart with a base64 attachment) on one connection, pipelined
#          with LITERAL+;
#        - `FETCH 1:* (ENVELOPE)` twice on one connection, timed;
#        - each command type of the mix alone, 20 times, on one connection;
#        - 50 connections running a fixed-seed command mix for 20 s (SELECT,
#          header FETCH of 50 UIDs, body FETCH, SEARCH FROM/UNSEEN/SUBJECT,
#          STORE +/-FLAGS, APPEND), counting tagged OKs per command type;
#        - 200 idle connections (logged in, INBOX selected): the server's memory
#          (sum over its processes) before and with them;
#   5. prints a table with both servers and the ratios, the machine and the
#      commands; stops both servers and removes the scratch folder, even on failure.
#
# Both servers take plaintext LOGIN without TLS here (correio with
# imap.allow_plaintext_auth=yes, Dovecot with disable_plaintext_auth=no and ssl=no),
# so TLS cost does not dominate the figures. Never do that off loopback.
#
# Run as root (make bench-imap). Besides the Dovecot packages it leaves two system
# users behind: "correio" (made by `correio init`) and "benchu" (owns Dovecot's
# scratch Maildir; bench/smtp.sh uses it too).
#
# Environment:
#   BENCH_IMAP_MESSAGES (10000)  messages loaded into each INBOX
#   BENCH_IMAP_CONNS    (50)     connections of the command mix
#   BENCH_IMAP_DURATION (20)     seconds of the command mix, per server
#   BENCH_IMAP_IDLE     (200)    idle connections for the memory figure
#   BENCH_IMAP_SEED     (1)      seed of the corpus and of the mix
#   BENCH_IMAP_WINDOW   (32)     APPENDs in flight while loading (LITERAL+)
#   BENCH_IMAP_WEIGHTS  ("")     weights of the mix's command types, 9 integers: select,
#                                fetch_headers, fetch_body, search_from, search_unseen,
#                                search_subject, store_add, store_del, append
#                                (default 3,25,30,5,5,5,10,10,7)
#   BENCH_IMAP_SERVERS  ("correio dovecot")  which servers to run (the ratio needs both)
#   BENCH_KEEP          (0)      1: keep the scratch folder (and say where)
#   BENCH_TMPDIR        (/tmp)   where the scratch folder is made (a real disk, not tmpfs)
#   BENCH_PORT_OFFSET   (21000)  first correio port offset tried (IMAP on 143+offset)
#   CORREIO_BIN         (build/correio)
#
# Exit status: 0 when both servers ran and every command got a tagged OK with the
# expected content, and neither server logged an error.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORREIO=${CORREIO_BIN:-$ROOT/build/correio}
N=${BENCH_IMAP_MESSAGES:-10000}
CONNS=${BENCH_IMAP_CONNS:-50}
DUR=${BENCH_IMAP_DURATION:-20}
IDLE=${BENCH_IMAP_IDLE:-200}
SEED=${BENCH_IMAP_SEED:-1}
WINDOW=${BENCH_IMAP_WINDOW:-32}
WEIGHTS=${BENCH_IMAP_WEIGHTS:-}
SERVERS=${BENCH_IMAP_SERVERS:-correio dovecot}
KEEP=${BENCH_KEEP:-0}
TMPBASE=${BENCH_TMPDIR:-/tmp}
OFFSET0=${BENCH_PORT_OFFSET:-21000}
DOMAIN=bench.test
USER_ADDR=u@$DOMAIN
START_TIMEOUT=30      # seconds a server may take to be ready
APPEND_TIMEOUT=900    # seconds the corpus load may take, per server
ENVELOPE_TIMEOUT=600  # seconds for the two FETCH 1:* (ENVELOPE)
IDLE_TIMEOUT=180      # seconds to open the idle connections
CMD_TIMEOUT=120       # seconds one command may go unanswered before the run stops

for v in N CONNS DUR IDLE SEED WINDOW; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "bench: BENCH_IMAP_MESSAGES, _CONNS, _DURATION, _IDLE, _SEED and _WINDOW must be positive integers" >&2
        exit 2
    fi
done
[ "$N" -ge 100 ] || { echo "bench: BENCH_IMAP_MESSAGES must be at least 100" >&2; exit 2; }
[ -z "$WEIGHTS" ] || [[ $WEIGHTS =~ ^[0-9]+(,[0-9]+){8}$ ]] \
    || { echo "bench: BENCH_IMAP_WEIGHTS must be 9 comma-separated integers" >&2; exit 2; }
[ "$WINDOW" -le 256 ] || { echo "bench: BENCH_IMAP_WINDOW must be at most 256" >&2; exit 2; }

say() { printf '%s\n' "$*"; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }
now() { printf '%s' "$EPOCHREALTIME"; }
exec 3>&1
CMDS=()
note_cmd() { CMDS+=("$1"); say "+ $1" >&3; }
run_logged() {
    local line
    printf -v line '%q ' "$@"
    note_cmd "${line% }"
    "$@"
}
want() { [[ " $SERVERS " == *" $1 "* ]]; }

# --- 1. packages ---------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (installs Dovecot, runs a private Dovecot instance)"
! want correio || [ -x "$CORREIO" ] || die "$CORREIO missing: run 'make build/correio' (or 'make bench-imap')"
need_pkgs=()
for p in dovecot-core dovecot-imapd sqlite3 iproute2 gcc libc6-dev procps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing Debian packages: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" \
        >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
    if [[ " ${need_pkgs[*]} " == *" dovecot-"* ]]; then
        # Whatever the package started, the system's own instance stays stopped.
        service dovecot stop >/dev/null 2>&1 || true
        doveadm -c /etc/dovecot/dovecot.conf stop >/dev/null 2>&1 || true
    fi
fi
for t in /usr/sbin/dovecot /usr/bin/doveadm /usr/bin/doveconf /usr/bin/sqlite3 /usr/bin/ss; do
    [ -x "$t" ] || die "$t missing after install"
done
for u in dovecot dovenull; do
    id "$u" >/dev/null 2>&1 || die "system user $u missing (made by the dovecot-core package)"
done

# --- scratch folder and cleanup ------------------------------------------------------------------
W=$(mktemp -d "$TMPBASE/correio-imapbench.XXXXXX")
chmod 755 "$W"          # the correio, dovecot and benchu users must traverse it
DC=$W/dovecot/dovecot.conf
CPID=""
GPID=""
DV_STARTED=0
STATUS=fail
CGROUPS=()

dovecot_master() { cat "$W/dovecot/run/master.pid" 2>/dev/null || true; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$GPID" ]; then kill -TERM "$GPID" 2>/dev/null || true; wait "$GPID" 2>/dev/null || true; fi
    if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then
        kill -TERM "$CPID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$CPID" 2>/dev/null; then kill -KILL "$CPID" 2>/dev/null || true; fi
        wait "$CPID" 2>/dev/null || true
    fi
    if [ "$DV_STARTED" = 1 ]; then
        local mp
        mp=$(dovecot_master)
        timeout 20 doveadm -c "$DC" stop >/dev/null 2>&1 || true
        if [ -n "$mp" ]; then
            for _ in $(seq 100); do kill -0 "$mp" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$mp" 2>/dev/null; then kill -KILL "$mp" 2>/dev/null || true; fi
        fi
    fi
    if [ "$STATUS" != ok ]; then
        for f in "$W"/logs/correio.log "$W"/logs/correio-[0-9].log "$W"/logs/dovecot.log "$W"/logs/gen-*.err; do
            if [ -s "$f" ]; then
                echo "---- last lines of ${f#"$W"/} ----" >&2
                tail -n 25 "$f" >&2
            fi
        done
    fi
    for cg in "${CGROUPS[@]}"; do rmdir "$cg" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then
        echo "bench: kept $W" >&2
    else
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$W/logs"

fstype=$(findmnt -n -o FSTYPE -T "$W" 2>/dev/null || stat -f -c %T "$W")
if [ "$fstype" = tmpfs ]; then
    say "bench: WARNING: $W is on tmpfs: fsync is free there, figures are not disk figures"
fi

# --- the load generator ------------------------------------------------------------------------
GEN=$W/imap_load
run_logged cc -O2 -Wall -Wextra -o "$GEN" "$ROOT/bench/imap_load.c" >"$W/logs/cc.log" 2>&1 \
    || { cat "$W/logs/cc.log" >&2; die "cannot build bench/imap_load.c"; }
CMDS[-1]="cc -O2 -Wall -Wextra -o \$W/imap_load bench/imap_load.c"
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export IMAP_LOAD_PASSWORD=$PASSWORD    # the generator reads it from there

# --- ports ----------------------------------------------------------------------------------------
port_busy() {
    ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    return 1
}
OFFSET=""
for ((o = OFFSET0; o < OFFSET0 + 400; o += 2)); do
    if ! port_busy $((25 + o)) && ! port_busy $((143 + o)) && ! port_busy $((144 + o)) \
        && ! port_busy $((993 + o)); then OFFSET=$o; break; fi
done
[ -n "$OFFSET" ] || die "no free ports found from offset $OFFSET0"
CPORT=$((143 + OFFSET))   # correio (it also listens on 25+offset and 993+offset)
DPORT=$((144 + OFFSET))   # Dovecot

# Wait until 127.0.0.1:$1 greets with "* OK" (and the process $2, if given, is alive).
wait_greeting() {
    local port=$1 pid=${2:-} deadline line
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        line=$( (exec 4<>"/dev/tcp/127.0.0.1/$port" || exit 0
                 IFS= read -r -t 5 l <&4 || true
                 printf 'Z LOGOUT\r\n' >&4 || true
                 printf '%s' "$l") 2>/dev/null || true)
        [[ $line == "* OK"* ]] && return 0
        sleep 0.1
    done
    return 1
}

# CPU accounting as in bench/smtp.sh: each server and its processes in a cgroup, whose
# counter the load generator reads (-C) at the start and end of what it measures.
CG_V1=/sys/fs/cgroup/cpuacct
CG_V2=/sys/fs/cgroup
cg_make() {
    local d=""
    if [ -w "$CG_V1" ] && [ -f "$CG_V1/cpuacct.usage" ]; then
        d=$CG_V1/correio-imapbench-$$-$1
    elif [ -w "$CG_V2" ] && [ -f "$CG_V2/cgroup.controllers" ]; then
        d=$CG_V2/correio-imapbench-$$-$1
    fi
    if [ -n "$d" ] && mkdir "$d" 2>/dev/null; then printf '%s' "$d"; fi
}
cg_join() { if [ -n "$1" ]; then { echo "$2" >"$1/cgroup.procs"; } 2>/dev/null || true; fi; }

# Percent of all CPUs busy (not idle, not iowait) over one second.
cpu_busy() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 1
    read -r -a b < <(grep '^cpu ' /proc/stat)
    awk -v u="$(( b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8] ))" \
        -v i="$(( b[4] + b[5] - a[4] - a[5] ))" 'BEGIN { printf "%.0f%%", (u + i > 0 ? 100 * u / (u + i) : 0) }'
}

# A process and all its descendants.
proc_tree() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END { q[1] = root; n = 1; for (i = 1; i <= n; i++) { print q[i]; m = split(kids[q[i]], k, " ");
              for (j = 1; j <= m; j++) q[++n] = k[j] } }'
}
# "RSS_KiB PSS_KiB PROCESSES" summed over a process tree.
mem_tree() {
    local rss=0 pss=0 n=0 p r s
    for p in $(proc_tree "$1"); do
        r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        s=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        [ -n "$r" ] || continue
        rss=$((rss + r)); pss=$((pss + ${s:-0})); n=$((n + 1))
    done
    printf '%s %s %s' "$rss" "$pss" "$n"
}

# key=value from the generator's output: kv FILE FIRSTWORD KEY [NAME]
kv() {
    awk -v w="$2" -v k="$3" -v nm="${4:-}" '
        $1 == w { ok = (nm == ""); v = "";
                  for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == "name" && a[2] == nm) ok = 1;
                                              if (a[1] == k) v = a[2] }
                  if (ok && v != "") { print v; exit } }' "$1"
}

GEN_FAIL=""   # generator runs that reported errors
# Run the generator: gen SERVER PHASE TIMEOUT ARGS... ; output in $W/logs/gen-SERVER-PHASE.{out,err}
gen() {
    local srv=$1 phase=$2 tmo=$3 rc=0
    shift 3
    local out=$W/logs/gen-$srv-$phase.out err=$W/logs/gen-$srv-$phase.err
    note_cmd "imap_load $*"
    timeout "$tmo" "$GEN" "$@" >"$out" 2>"$err" 3>&- &
    GPID=$!
    wait "$GPID" || rc=$?
    GPID=""
    if [ "$rc" != 0 ]; then
        GEN_FAIL+=" $srv/$phase(exit $rc)"
        say "bench: $srv: imap_load $phase exited $rc:"
        sed 's/^/    /' "$err" | head -25
        [ "$rc" = 1 ] || die "$srv: imap_load $phase could not finish (exit $rc$([ "$rc" = 124 ] && echo ', timed out'))"
    fi
    return 0
}

# The same work against one server on port $1, named $2: its process tree's root is
# printed by function $3, its cgroup is $4, function $5 restarts it. Sets <NAME>_* results.
bench_server() {
    local port=$1 name=$2 rootf=$3 cg=$4 restartf=$5 root mem0 mem1 deadline
    local NAME=${name^^}

    say "== $name on 127.0.0.1:$port"
    # The generator reads the server's cgroup CPU counter when its measured span
    # starts and ends (logins and its own set-up left out).
    local cpuf=()
    if [ -n "$cg" ] && [ -f "$cg/cpuacct.usage" ]; then cpuf=(-C "$cg/cpuacct.usage");
    elif [ -n "$cg" ] && [ -f "$cg/cpu.stat" ]; then cpuf=(-C "$cg/cpu.stat"); fi
    gen "$name" append "$APPEND_TIMEOUT" append -p "$port" -n "$N" -s "$SEED" -W "$WINDOW" -T "$CMD_TIMEOUT" \
        "${cpuf[@]}"
    server_alive "$name" || die "$name exited during the APPEND load"

    gen "$name" envelope "$ENVELOPE_TIMEOUT" envelope -p "$port" -n "$N" -T "$CMD_TIMEOUT"
    server_alive "$name" || die "$name exited during FETCH 1:* (ENVELOPE)"

    gen "$name" probe "$ENVELOPE_TIMEOUT" probe -p "$port" -n "$N" -s "$SEED" -T "$CMD_TIMEOUT"
    server_alive "$name" || die "$name exited during the one-connection probe"

    sync
    printf -v "${NAME}_BUSY" '%s' "$(cpu_busy)"
    gen "$name" mix $((DUR + 2 * CMD_TIMEOUT + 60)) mix -p "$port" -c "$CONNS" -d "$DUR" -s "$SEED" -n "$N" \
        -T "$CMD_TIMEOUT" ${WEIGHTS:+-w "$WEIGHTS"} "${cpuf[@]}"
    server_alive "$name" || die "$name exited during the command mix"

    # Idle connections: memory of the server's process tree before and with them, in
    # a server restarted on the same data (memory that the mix's sessions freed would
    # be reused by the idle ones and hide their cost). One connection logs in, selects
    # INBOX and logs out first, so that what every session shares is loaded "before".
    $restartf
    gen "$name" warmup 60 idle -p "$port" -c 1 -H 0 -T "$CMD_TIMEOUT"
    sleep 2   # Dovecot: the warm-up's imap process has exited
    root=$($rootf)
    mem0=$(mem_tree "$root")
    rm -f "$W/idle-release"
    note_cmd "imap_load idle -p $port -c $IDLE -P $CONNS -f \$W/idle-release -H $IDLE_TIMEOUT  (memory measured once all are selected)"
    "$GEN" idle -p "$port" -c "$IDLE" -P "$CONNS" -f "$W/idle-release" -H "$IDLE_TIMEOUT" -T "$CMD_TIMEOUT" \
        >"$W/logs/gen-$name-idle.out" 2>"$W/logs/gen-$name-idle.err" 3>&- &
    GPID=$!
    deadline=$(( $(date +%s) + IDLE_TIMEOUT ))
    while ! grep -q '^ready' "$W/logs/gen-$name-idle.out" 2>/dev/null; do
        kill -0 "$GPID" 2>/dev/null || { wait "$GPID" || true; GPID="";
            cat "$W/logs/gen-$name-idle.err" >&2; die "$name: the $IDLE idle connections failed"; }
        [ "$(date +%s)" -lt "$deadline" ] || die "$name: $IDLE idle connections not ready after ${IDLE_TIMEOUT}s"
        sleep 0.2
    done
    sleep 2   # settle
    mem1=$(mem_tree "$root")
    touch "$W/idle-release"
    local rc=0
    wait "$GPID" || rc=$?
    GPID=""
    if [ "$rc" != 0 ]; then
        GEN_FAIL+=" $name/idle(exit $rc)"
        sed 's/^/    /' "$W/logs/gen-$name-idle.err" | head -25
    fi
    printf -v "${NAME}_MEM0" '%s' "$mem0"
    printf -v "${NAME}_MEM1" '%s' "$mem1"
    server_alive "$name" || die "$name exited during the idle connections"
}

server_alive() {
    case $1 in
    correio) kill -0 "$CPID" 2>/dev/null ;;
    dovecot) local mp; mp=$(dovecot_master); [ -n "$mp" ] && kill -0 "$mp" 2>/dev/null ;;
    esac
}
correio_root() { printf '%s' "$CPID"; }

say "== correio-imapbench in $W ($fstype): $N messages, mix of $CONNS connections for ${DUR}s, $IDLE idle connections; servers: $SERVERS"
say "== plaintext LOGIN without TLS on 127.0.0.1 for both servers (TLS cost left out of the figures)"

CLOG_N=0   # correio's log: correio.log, then correio-2.log after the restart
correio_start() {
    local cc=$W/correio/correio.conf log deadline
    CLOG_N=$((CLOG_N + 1))
    log=$W/logs/correio$([ "$CLOG_N" = 1 ] || echo "-$CLOG_N").log
    note_cmd "$(printf '%q ' "$CORREIO" -c "$cc" serve)2>\$W/logs/${log##*/} &"
    "$CORREIO" -c "$cc" serve 2>"$log" 3>&- &
    CPID=$!
    cg_join "$C_CG" "$CPID"
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    until grep -q 'event=ready' "$log" 2>/dev/null; do
        kill -0 "$CPID" 2>/dev/null || die "correio exited at start"
        [ "$(date +%s)" -lt "$deadline" ] || die "correio: no event=ready in its log after ${START_TIMEOUT}s"
        sleep 0.1
    done
    wait_greeting "$CPORT" "$CPID" || die "correio does not greet on 127.0.0.1:$CPORT"
}
correio_stop() {
    local rc=0
    note_cmd "kill -TERM <correio serve>"
    kill -TERM "$CPID"
    for _ in $(seq 300); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$CPID" 2>/dev/null && die "correio still running 30 s after SIGTERM"
    wait "$CPID" || rc=$?
    CPID=""
    [ "$rc" = 0 ] || die "correio exited with status $rc on SIGTERM"
}
correio_restart() { correio_stop; correio_start; }

# --- 2. correio --------------------------------------------------------------------------------------
bench_correio() {
    local cc=$W/correio/correio.conf
    run_logged "$CORREIO" init "$W/correio" --domain "$DOMAIN" --port-offset "$OFFSET" \
        --set server.log_level=warn --set imap.max_connections_per_ip=$((IDLE > CONNS ? IDLE : CONNS)) \
        --set imap.allow_plaintext_auth=yes >"$W/logs/correio-init.log" 2>&1 \
        || { cat "$W/logs/correio-init.log" >&2; die "correio init failed"; }
    run_logged "$CORREIO" -c "$cc" user add "$USER_ADDR" --password-stdin <<<"$PASSWORD" \
        >"$W/logs/correio-user.log" 2>&1 \
        || { cat "$W/logs/correio-user.log" >&2; die "correio user add failed"; }
    CMDS[-1]+="  (a random password on standard input)"
    C_CG=$(cg_make correio)
    [ -z "$C_CG" ] || CGROUPS+=("$C_CG")
    correio_start

    bench_server "$CPORT" correio correio_root "$C_CG" correio_restart

    correio_stop
    C_WARN=$(cat "$W"/logs/correio*.log | grep -cE '^[^ ]+ warn ' || true)
    C_ERR=$(cat "$W"/logs/correio*.log | grep -cE '^[^ ]+ error ' || true)
}

dovecot_start() {
    note_cmd "dovecot -c \$W/dovecot/dovecot.conf"
    DV_STARTED=1
    # The subshell joins the cgroup, then becomes dovecot: the master and every
    # process it spawns are counted.
    (cg_join "$D_CG" "$BASHPID"; exec dovecot -c "$DC") >"$W/logs/dovecot-start.log" 2>&1 3>&- \
        || { cat "$W/logs/dovecot-start.log" >&2; die "dovecot did not start"; }
    wait_greeting "$DPORT" || die "Dovecot does not greet on 127.0.0.1:$DPORT"
    server_alive dovecot || die "Dovecot master not running"
}
dovecot_stop() {
    local mp
    note_cmd "doveadm -c \$W/dovecot/dovecot.conf stop"
    mp=$(dovecot_master)
    timeout 30 doveadm -c "$DC" stop >/dev/null 2>&1 || die "doveadm stop failed"
    for _ in $(seq 300); do kill -0 "$mp" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$mp" 2>/dev/null && die "Dovecot still running 30 s after doveadm stop"
    DV_STARTED=0
}
dovecot_restart() { dovecot_stop; dovecot_start; }

# --- 3. Dovecot: a private instance ----------------------------------------------------------------
bench_dovecot() {
    local buid bgid hash
    id benchu >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin benchu
    buid=$(id -u benchu)
    bgid=$(id -g benchu)
    mkdir -p "$W/dovecot/run" "$W/dovecot/state" "$W/dmail/u"
    chown -R benchu:benchu "$W/dmail"
    # The same password as correio's account, hashed the same way when correio ran:
    # its yescrypt hash (crypt(3), Dovecot's CRYPT scheme); else SHA512-CRYPT.
    hash=""
    if [ -f "$W/correio/data/accounts.sqlite" ]; then
        hash=$(sqlite3 "$W/correio/data/accounts.sqlite" \
            "select hash from accounts where address = '$USER_ADDR'" 2>/dev/null || true)
    fi
    if [ -n "$hash" ]; then hash="{CRYPT}$hash"; else
        hash=$(doveadm -c /dev/null pw -s SHA512-CRYPT -p "$PASSWORD" 2>/dev/null) || die "doveadm pw failed"
    fi
    printf '%s:%s:%s:%s::%s::\n' "$USER_ADDR" "$hash" "$buid" "$bgid" "$W/dmail/u" >"$W/dovecot/users"
    chown root:dovecot "$W/dovecot/users"     # read by Dovecot's auth process (user dovecot)
    chmod 640 "$W/dovecot/users"
    cat >"$DC" <<EOF
# Private benchmark instance (bench/imap.sh). Dovecot's defaults otherwise,
# including mail_fsync = optimized (a message is fsynced when saved).
base_dir = $W/dovecot/run
state_dir = $W/dovecot/state
instance_name = dovecot-imapbench
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = $W/logs/dovecot.log
mail_location = maildir:~/Maildir
first_valid_uid = $buid
passdb {
  driver = passwd-file
  args = scheme=CRYPT username_format=%u $W/dovecot/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $W/dovecot/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DPORT
  }
  inet_listener imaps {
    port = 0
  }
}
protocol imap {
  # default 10 per user and address; the benchmark opens $IDLE at once
  mail_max_userip_connections = $((IDLE + CONNS))
}
EOF
    doveconf -c "$DC" -n >"$W/logs/doveconf.log" 2>&1 \
        || { cat "$W/logs/doveconf.log" >&2; die "doveconf rejects $DC"; }
    D_CG=$(cg_make dovecot)
    [ -z "$D_CG" ] || CGROUPS+=("$D_CG")
    dovecot_start

    bench_server "$DPORT" dovecot dovecot_master "$D_CG" dovecot_restart

    dovecot_stop
    # doveadm stop's own SIGTERM to the master is logged as a Warning: not counted.
    D_WARN=$(grep -E 'Warning:' "$W/logs/dovecot.log" | grep -cv 'master: Warning: Killed with signal 15' || true)
    D_ERR=$(grep -cE '(Error|Fatal|Panic):' "$W/logs/dovecot.log" || true)
}

# --- 4. the load, one server at a time (the other is not running) ---------------------------------
if want correio; then bench_correio; fi
if want dovecot; then bench_dovecot; fi

# --- 5. report ---------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a";
                                           else printf "%.2f", a / b }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.1f}" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a";
                                                        else printf f, a / b }'; }
# shellcheck disable=SC2086  # the MEM values are "RSS PSS N", split on purpose
val() {   # val SERVER WHAT
    local s=$1 f=$W/logs/gen-$1 v a b
    case $2 in
    append_rate) kv "$f-append.out" append rate ;;
    append_s) kv "$f-append.out" append seconds ;;
    append_mib) kv "$f-append.out" append mib_s ;;
    append_cpu) v=$(kv "$f-append.out" server cpu_s); printf '%s' "${v:-n/a}" ;;
    env1) kv "$f-envelope.out" envelope first_s ;;
    env2) kv "$f-envelope.out" envelope second_s ;;
    mix_total) kv "$f-mix.out" total rate ;;
    mix_cpu) v=$(kv "$f-mix.out" server cpu_s); printf '%s' "${v:-n/a}" ;;
    mix_per_cpu) v=$(kv "$f-mix.out" server cpu_s); div "$(kv "$f-mix.out" total ok)" "${v:-n/a}" "%.0f" ;;
    mix_errors) kv "$f-mix.out" total errors ;;
    gen_busy) kv "$f-mix.out" generator busy_pct_of_one_cpu ;;
    gen_busy_append) kv "$f-append.out" generator busy_pct_of_one_cpu ;;
    rss0) v=${s^^}_MEM0; set -- ${!v}; div "$1" 1024 ;;
    rss1) v=${s^^}_MEM1; set -- ${!v}; div "$1" 1024 ;;
    procs0) v=${s^^}_MEM0; set -- ${!v}; printf '%s' "$3" ;;
    procs1) v=${s^^}_MEM1; set -- ${!v}; printf '%s' "$3" ;;
    rss_per) a=${s^^}_MEM0; b=${s^^}_MEM1; set -- ${!a} ${!b}; div "$(( $4 - $1 ))" "$IDLE" ;;
    pss_per) a=${s^^}_MEM0; b=${s^^}_MEM1; set -- ${!a} ${!b}; div "$(( $5 - $2 ))" "$IDLE" ;;
    type:*) kv "$f-mix.out" type rate "${2#type:}" ;;
    lat50:*) kv "$f-mix.out" type p50_ms "${2#lat50:}" ;;
    lat99:*) kv "$f-mix.out" type p99_ms "${2#lat99:}" ;;
    alone:*) kv "$f-probe.out" type p50_ms "${2#alone:}" ;;
    esac
}
both() { want correio && want dovecot; }
row() { printf '%-44s %12s %12s %16s\n' "$@"; }
line() {  # line LABEL WHAT
    local c="" d="" r=""
    want correio && c=$(val correio "$2")
    want dovecot && d=$(val dovecot "$2")
    both && r=$(ratio "$c" "$d")
    row "$1" "${c:--}" "${d:--}" "${r:--}"
}

say ""
say "== IMAP: correio and Dovecot, one after the other, on 127.0.0.1, plaintext LOGIN, no TLS"
say "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
say "kernel:   $(uname -srm); scratch folder on $fstype ($(df -P "$W" | awk 'NR==2 {print $1}'))"
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git -C "$ROOT" status --porcelain -- src 2>/dev/null)" ]; then
    rev+=" + uncommitted changes in src/"
fi
if want correio; then
    say "correio:  $("$CORREIO" --version 2>/dev/null || echo '?'), binary built $(date -u -r "$CORREIO" +%Y-%m-%dT%H:%M:%SZ), sha256 $(sha256sum "$CORREIO" | cut -c1-12); work tree now: HEAD $rev"
fi
say "Dovecot:  $(dovecot --version 2>/dev/null | head -1)"
want correio && corp=$(grep '^corpus' "$W/logs/gen-correio-append.out" || true)
want dovecot && corp=$(grep '^corpus' "$W/logs/gen-dovecot-append.out" || true)
say "corpus:   ${corp#corpus }  (seed $SEED; the same bytes for both servers)"
busy=""
want correio && busy+="${CORREIO_BUSY} before correio's mix"
both && busy+=", "
want dovecot && busy+="${DOVECOT_BUSY} before Dovecot's mix"
say "CPU busy: $busy (other work on the machine skews the rates, not the CPU seconds)"
say ""
row "" correio dovecot "correio/dovecot"
line "APPEND of the corpus, msg/s (higher better)" append_rate
line "  MiB/s" append_mib
line "  seconds" append_s
line "  server CPU s (lower better)" append_cpu
line "FETCH 1:* (ENVELOPE), 1st run s (lower)" env1
line "FETCH 1:* (ENVELOPE), 2nd run s (lower)" env2
line "mix, all commands, tagged OK/s (higher)" mix_total
for t in select fetch_headers fetch_body search_from search_unseen search_subject store_add store_del append; do
    line "  $t /s" "type:$t"
done
line "  server CPU s during the ${DUR} s" mix_cpu
line "  commands per server CPU second (higher)" mix_per_cpu
line "idle: memory before, RSS MiB (sum)" rss0
line "  processes before" procs0
line "  memory with $IDLE idle, RSS MiB (sum)" rss1
line "  processes with $IDLE idle" procs1
line "  RSS per idle connection, KiB (lower)" rss_per
line "  PSS per idle connection, KiB (lower)" pss_per
say ""
say "one command at a time on one connection (probe), ms (p50 of 20):"
for t in select fetch_headers fetch_body search_from search_unseen search_subject store_add store_del append; do
    line "  $t" "alone:$t"
done
say ""
say "mix latency, ms (p50 / p99):"
for t in select fetch_headers fetch_body search_from search_unseen search_subject store_add store_del append; do
    c="" d=""
    want correio && c="$(val correio "lat50:$t") / $(val correio "lat99:$t")"
    want dovecot && d="$(val dovecot "lat50:$t") / $(val dovecot "lat99:$t")"
    printf '  %-16s %22s %22s\n' "$t" "${c:--}" "${d:--}"
done
say ""
say "APPEND: the corpus on one connection, up to $WINDOW APPENDs in flight (LITERAL+), flags and"
say "         INTERNALDATE given; then SELECT INBOX must show $N EXISTS."
say "ENVELOPE: one connection, SELECT INBOX, then FETCH 1:* (ENVELOPE) twice, right after the load"
say "         (message files still in the page cache); each must return $N ENVELOPEs."
say "probe:   one connection, INBOX selected, 20 commands of each type of the mix, one at a"
say "         time, type after type, after the ENVELOPE runs and before the mix."
wsrv=correio; want correio || wsrv=dovecot
say "mix:     $CONNS connections, each logged in with INBOX selected, one command in flight each,"
say "         for ${DUR}s; weights: $(grep -m1 '^weights' "$W/logs/gen-$wsrv-mix.out" | cut -d' ' -f2-)"
say "         (fetch_headers: UID FETCH a:a+49 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To"
say "         Subject Date Message-ID)]); fetch_body: UID FETCH u BODY.PEEK[]; search_from: SEARCH FROM"
say "         \"senderNN\"; search_subject: SEARCH SUBJECT \"word\"; store_add/del: UID STORE u +/-FLAGS"
say "         (\\Seen); append: 1-2 KiB). Only tagged OKs with the expected content count: 50 header"
say "         literals, a body literal of the message's size, the corpus's SEARCH hit counts."
for s in correio dovecot; do
    want $s && say "         load generator (one thread, epoll), $s: $(val $s gen_busy)% of one CPU during the mix, $(val $s gen_busy_append)% during the APPEND load"
done
say "server CPU s: CPU seconds (user + system) of the server's processes, from a cgroup of its"
say "         own, read by the generator when the measured span starts and ends."
say "idle:    the server restarted on the same data; one connection logs in, selects INBOX and"
say "         logs out (warm-up); then $IDLE connections log in ($CONNS at most at once) and select"
say "         INBOX and stay. The server's processes (correio: one; Dovecot: master and all its"
say "         children) summed from /proc/PID/status VmRSS and smaps_rollup Pss, 2 s after the"
say "         last SELECT, minus the same sum before them, / $IDLE."
want correio && say "checks:   correio: $C_WARN warn and $C_ERR error log lines"
want dovecot && say "checks:   Dovecot: $D_WARN Warning and $D_ERR Error/Fatal/Panic log lines"
say ""
say "commands:"
for c in "${CMDS[@]}"; do say "  $c"; done
say "  (the password of u@bench.test is random, given in IMAP_LOAD_PASSWORD; \$W is the scratch folder)"

fail=""
if want correio && [ $((C_WARN + C_ERR)) != 0 ]; then
    say ""
    say "correio warn/error log lines (first 20):"
    grep -hE '^[^ ]+ (warn|error) ' "$W"/logs/correio*.log | head -20
    [ "$C_ERR" = 0 ] || fail+=" correio logged $C_ERR error lines;"
fi
if want dovecot && [ $((D_WARN + D_ERR)) != 0 ]; then
    say ""
    say "Dovecot warning/error lines (first 20):"
    grep -E '(Warning|Error|Fatal|Panic):' "$W/logs/dovecot.log" \
        | grep -v 'master: Warning: Killed with signal 15' | head -20
    [ "$D_ERR" = 0 ] || fail+=" Dovecot logged $D_ERR error lines;"
fi
[ -z "$GEN_FAIL" ] || fail+=" the load generator saw errors:$GEN_FAIL (see above);"
[ -z "$fail" ] || die "${fail%;}"
STATUS=ok
