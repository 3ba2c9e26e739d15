#!/usr/bin/env bash
# bench/relay.sh — outbound relay, correio side by side with Postfix (`make bench-relay`).
#
# One run, loopback only (127.0.0.1):
#   1. installs Postfix (postfix itself and its test programs smtp-sink) and
#      dnsmasq-base when missing; builds the load generator bench/relay_load.c (cc -O2);
#   2. the remote side: Postfix's smtp-sink as the MX of the remote domain sink.test,
#      one sink per server (fresh counters); a private dnsmasq on a loopback port
#      answers "sink.test MX 10 mx.sink.test" and "mx.sink.test A 127.0.0.1";
#   3. correio: `correio init` in a scratch folder (DNS look-ups through that dnsmasq,
#      remote SMTP port = its sink's port, plaintext AUTH on the submission port
#      allowed), one account u@bench.test, `serve`;
#   4. Postfix: a private instance (own config, queue and data directories in the
#      scratch folder) on 127.0.0.1 that relays for 127.0.0.0/8 (mynetworks, no AUTH)
#      and sends sink.test to its sink by a transport map entry
#      (sink.test smtp:[127.0.0.1]:PORT: no DNS look-up);
#   5. against each, one server at a time, the same load: relay_load opens S
#      connections (AUTH PLAIN once per connection for correio; none for Postfix),
#      then sends messages back to back on them, MAIL/RCPT/DATA pipelined, until N
#      messages (From: and MAIL FROM u@bench.test, one recipient r<i>@sink.test each,
#      a body of BENCH_RELAY_SIZE bytes) are accepted; then waits until the sink has
#      counted N messages and the server's queue is empty;
#   6. prints submission and end-to-end messages/s, the server's CPU seconds (its own
#      cgroup), the ratios, the machine and the commands; stops everything it started
#      and removes the scratch folder, even on failure.
#
# Run as root (make bench-relay). Besides the packages it leaves the system user
# "correio" (made by `correio init`) behind.
#
# Environment:
#   BENCH_RELAY_MESSAGES (5000)  messages per server
#   BENCH_RELAY_SESSIONS (20)    parallel SMTP sessions of the load generator
#   BENCH_RELAY_SIZE     (4096)  message body in bytes (headers add about 250)
#   BENCH_RELAY_CONCURRENCY ("") connections to one destination: empty keeps each
#                                server's default (correio delivery.max_connections_per_domain
#                                5, Postfix default_destination_concurrency_limit 20);
#                                a number sets both to it
#   BENCH_RELAY_SERVERS ("correio postfix")  which servers to run (the ratio needs both)
#   BENCH_KEEP          (0)      1: keep the scratch folder (and say where)
#   BENCH_TMPDIR        (/tmp)   where the scratch folder is made (a real disk: on tmpfs
#                                fsync costs nothing and the figures mean little)
#   BENCH_PORT_OFFSET   (22000)  first correio port offset tried (submission on 587+offset)
#   CORREIO_BIN         (build/correio)
#
# Exit status: 0 when both servers ran, every message was accepted, each sink counted
# exactly N messages, both queues emptied, and neither server logged an error.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORREIO=${CORREIO_BIN:-$ROOT/build/correio}
N=${BENCH_RELAY_MESSAGES:-5000}
S=${BENCH_RELAY_SESSIONS:-20}
L=${BENCH_RELAY_SIZE:-4096}
CONC=${BENCH_RELAY_CONCURRENCY:-}
SERVERS=${BENCH_RELAY_SERVERS:-correio postfix}
KEEP=${BENCH_KEEP:-0}
TMPBASE=${BENCH_TMPDIR:-/tmp}
OFFSET0=${BENCH_PORT_OFFSET:-22000}
DOMAIN=bench.test
SENDER=u@$DOMAIN
RDOMAIN=sink.test
HELO=client.example.org
START_TIMEOUT=30      # seconds a server, the sink or dnsmasq may take to be ready
REPLY_TIMEOUT=120     # seconds one SMTP command may go unanswered during the load
DELIVER_TIMEOUT=900   # seconds after the last 250 for the sink count and the empty queue
LOAD_TIMEOUT=3600     # seconds the whole generator run may take, per server

for v in N S L; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "bench: BENCH_RELAY_MESSAGES, BENCH_RELAY_SESSIONS and BENCH_RELAY_SIZE must be positive integers" >&2
        exit 2
    fi
done
[ -z "$CONC" ] || [[ $CONC =~ ^[1-9][0-9]*$ ]] \
    || { echo "bench: BENCH_RELAY_CONCURRENCY must be empty or a positive integer" >&2; exit 2; }

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
[ "$(id -u)" = 0 ] || die "run as root (installs packages, runs a private Postfix instance)"
! want correio || [ -x "$CORREIO" ] || die "$CORREIO missing: run 'make build/correio' (or 'make bench-relay')"
need_pkgs=()
for p in postfix dnsmasq-base iproute2 gcc libc6-dev procps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing Debian packages: ${need_pkgs[*]}"
    # "No configuration": the package writes no main.cf and starts nothing useful.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" \
        >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
    if [[ " ${need_pkgs[*]} " == *" postfix "* ]]; then
        # Whatever the package may have started, the system's own instance stays stopped.
        postfix stop >/dev/null 2>&1 || true
        service postfix stop >/dev/null 2>&1 || true
    fi
fi
for t in /usr/sbin/postfix /usr/sbin/postconf /usr/sbin/postqueue /usr/sbin/smtp-sink \
         /usr/sbin/dnsmasq /usr/bin/ss /usr/bin/cc; do
    [ -x "$t" ] || die "$t missing after install"
done
id nobody >/dev/null 2>&1 || die "no user 'nobody' (smtp-sink runs as it)"

# --- scratch folder and cleanup ------------------------------------------------------------------
W=$(mktemp -d "$TMPBASE/correio-relaybench.XXXXXX")
chmod 755 "$W"          # the correio and postfix users must traverse it
PC=$W/postfix/etc       # the private Postfix instance's config_directory
CPID=""                 # correio serve
GPID=""                 # the load generator
DPID=""                 # dnsmasq
SINKPID=""              # the smtp-sink in use
PF_STARTED=0
STATUS=fail
CGROUPS=()

stop_pid() {  # stop_pid PID: TERM, up to 10 s, then KILL
    local p=$1
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$GPID"
    stop_pid "$CPID"
    if [ "$PF_STARTED" = 1 ]; then
        postfix -c "$PC" stop >/dev/null 2>&1 || postfix -c "$PC" abort >/dev/null 2>&1 || true
    fi
    stop_pid "$SINKPID"
    stop_pid "$DPID"
    if [ "$STATUS" != ok ]; then
        for f in "$W"/logs/correio.log "$W"/postfix/maillog "$W"/logs/gen-*.err "$W"/logs/sink-*.err \
                 "$W"/logs/dnsmasq.log; do
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

# --- the load generator ----------------------------------------------------------------------------
GEN=$W/relay_load
run_logged cc -O2 -Wall -Wextra -o "$GEN" "$ROOT/bench/relay_load.c" >"$W/logs/cc.log" 2>&1 \
    || { cat "$W/logs/cc.log" >&2; die "cannot build bench/relay_load.c"; }
CMDS[-1]="cc -O2 -Wall -Wextra -o \$W/relay_load bench/relay_load.c"
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export RELAY_LOAD_PASSWORD=$PASSWORD    # the generator reads it from there

# --- ports -------------------------------------------------------------------------------------------
port_busy() {
    ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    ss -Huln "sport = :$1" 2>/dev/null | grep -q . && return 0
    (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    return 1
}
OFFSET=""
for ((o = OFFSET0; o < OFFSET0 + 400; o += 2)); do
    busy=0
    # correio: 25 110 143 465 587 993 995; Postfix 26; dnsmasq 53; the sinks 2525, 2526
    for p in 25 26 53 110 143 465 587 993 995 2525 2526; do
        if port_busy $((p + o)); then busy=1; break; fi
    done
    if [ "$busy" = 0 ]; then OFFSET=$o; break; fi
done
[ -n "$OFFSET" ] || die "no free ports found from offset $OFFSET0"
CPORT=$((587 + OFFSET))     # correio's submission
PPORT=$((26 + OFFSET))      # Postfix's smtpd
DNSPORT=$((53 + OFFSET))    # dnsmasq (UDP and TCP)
SINK_C=$((2525 + OFFSET))   # correio's sink
SINK_P=$((2526 + OFFSET))   # Postfix's sink

# Wait until 127.0.0.1:$1 answers 220 (and the process $2, if given, is alive).
wait_banner() {
    local port=$1 pid=${2:-} deadline line
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        line=$( (exec 4<>"/dev/tcp/127.0.0.1/$port" || exit 0
                 IFS= read -r -t 5 l <&4 || true
                 printf 'QUIT\r\n' >&4 || true
                 printf '%s' "$l") 2>/dev/null || true)
        [[ $line == 220* ]] && return 0
        sleep 0.1
    done
    return 1
}

# CPU accounting as in bench/smtp.sh: each server and all its processes in a cgroup of
# their own; the generator reads its counter (-C) at the start, when the last message
# is accepted and at the end.
CG_V1=/sys/fs/cgroup/cpuacct
CG_V2=/sys/fs/cgroup
cg_make() {
    local d=""
    if [ -w "$CG_V1" ] && [ -f "$CG_V1/cpuacct.usage" ]; then
        d=$CG_V1/correio-relaybench-$$-$1
    elif [ -w "$CG_V2" ] && [ -f "$CG_V2/cgroup.controllers" ]; then
        d=$CG_V2/correio-relaybench-$$-$1
    fi
    if [ -n "$d" ] && mkdir "$d" 2>/dev/null; then printf '%s' "$d"; fi
}
cg_join() { if [ -n "$1" ]; then { echo "$2" >"$1/cgroup.procs"; } 2>/dev/null || true; fi; }
cg_file() {   # the counter file of cgroup $1, or nothing
    if [ -n "$1" ] && [ -f "$1/cpuacct.usage" ]; then printf '%s' "$1/cpuacct.usage";
    elif [ -n "$1" ] && [ -f "$1/cpu.stat" ]; then printf '%s' "$1/cpu.stat"; fi
}

# Percent of all CPUs busy (not idle, not iowait) over one second.
cpu_busy() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 1
    read -r -a b < <(grep '^cpu ' /proc/stat)
    awk -v u="$(( b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8] ))" \
        -v i="$(( b[4] + b[5] - a[4] - a[5] ))" 'BEGIN { printf "%.0f%%", (u + i > 0 ? 100 * u / (u + i) : 0) }'
}

# key=value from the generator's output: kv FILE FIRSTWORD KEY
kv() {
    awk -v w="$2" -v k="$3" '
        $1 == w { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) { print a[2]; exit } } }' "$1"
}
# The sink's last counters: sink_kv FILE KEY (sess, quit or mesg)
sink_kv() { tr '\r' '\n' <"$1" | awk -v k="$2" '{ for (i = 1; i <= NF; i++) { split($i, a, "=");
                                                  if (a[1] == k) v = a[2] } } END { print v + 0 }'; }

# --- the remote side: DNS and the sinks -----------------------------------------------------------
dns_start() {
    note_cmd "dnsmasq --keep-in-foreground --no-resolv --no-hosts --port=$DNSPORT --listen-address=127.0.0.1 --bind-interfaces --conf-file=/dev/null --local=/test/ --mx-host=$RDOMAIN,mx.$RDOMAIN,10 --host-record=mx.$RDOMAIN,127.0.0.1 --user=root --pid-file=\$W/dnsmasq.pid --log-facility=\$W/logs/dnsmasq.log &"
    dnsmasq --keep-in-foreground --no-resolv --no-hosts --port="$DNSPORT" --listen-address=127.0.0.1 \
        --bind-interfaces --conf-file=/dev/null --local=/test/ --mx-host="$RDOMAIN,mx.$RDOMAIN,10" \
        --host-record="mx.$RDOMAIN,127.0.0.1" --user=root --pid-file="$W/dnsmasq.pid" \
        --log-facility="$W/logs/dnsmasq.log" >"$W/logs/dnsmasq.out" 2>&1 3>&- &
    DPID=$!
    local deadline=$(( $(date +%s) + START_TIMEOUT ))
    until ss -Hlun "sport = :$DNSPORT" 2>/dev/null | grep -q .; do
        kill -0 "$DPID" 2>/dev/null || { cat "$W/logs/dnsmasq.out" >&2; die "dnsmasq exited at start"; }
        [ "$(date +%s)" -lt "$deadline" ] || die "dnsmasq does not listen on 127.0.0.1:$DNSPORT"
        sleep 0.1
    done
}

# sink_start PORT NAME: a fresh smtp-sink (its counters at 0) on 127.0.0.1:PORT.
sink_start() {
    local port=$1 name=$2
    note_cmd "smtp-sink -c -u nobody 127.0.0.1:$port 1024 >\$W/logs/sink-$name.out &"
    smtp-sink -c -u nobody "127.0.0.1:$port" 1024 >"$W/logs/sink-$name.out" 2>"$W/logs/sink-$name.err" 3>&- &
    SINKPID=$!
    # The probe's session sends no message: the message counter stays at 0.
    wait_banner "$port" "$SINKPID" || die "smtp-sink does not answer on 127.0.0.1:$port"
}
sink_stop() { stop_pid "$SINKPID"; SINKPID=""; }

GEN_FAIL=""
# gen NAME ARGS...: the generator against one server; output in $W/logs/gen-NAME.{out,err}
gen() {
    local name=$1 rc=0
    shift
    local out=$W/logs/gen-$name.out err=$W/logs/gen-$name.err
    local line
    printf -v line '%q ' "$@"
    note_cmd "relay_load ${line% }"
    timeout "$LOAD_TIMEOUT" "$GEN" "$@" >"$out" 2>"$err" 3>&- &
    GPID=$!
    wait "$GPID" || rc=$?
    GPID=""
    if [ "$rc" != 0 ]; then
        say "bench: $name: relay_load exited $rc:"
        sed 's/^/    /' "$err" | head -25
        [ "$rc" = 1 ] || die "$name: relay_load could not finish (exit $rc$([ "$rc" = 124 ] && echo ', timed out'))"
        GEN_FAIL+=" $name"
    fi
    return 0
}

say "== correio-relaybench in $W ($fstype): $N messages of $L bytes over $S sessions to $RDOMAIN; servers: $SERVERS"

# --- 3. correio ---------------------------------------------------------------------------------------
bench_correio() {
    local cc=$W/correio/correio.conf rc conc_set=()
    [ -z "$CONC" ] || conc_set=(--set "delivery.max_connections_per_domain=$CONC")
    dns_start
    sink_start "$SINK_C" correio
    run_logged "$CORREIO" init "$W/correio" --domain "$DOMAIN" --port-offset "$OFFSET" \
        --set server.log_level=warn \
        --set "delivery.dns_resolver=127.0.0.1:$DNSPORT" --set "delivery.remote_smtp_port=$SINK_C" \
        --set submission.allow_plaintext_auth=yes \
        --set "submission.max_connections_per_ip=$((S > 50 ? S : 50))" "${conc_set[@]}" \
        >"$W/logs/correio-init.log" 2>&1 \
        || { cat "$W/logs/correio-init.log" >&2; die "correio init failed"; }
    run_logged "$CORREIO" -c "$cc" user add "$SENDER" --password-stdin <<<"$PASSWORD" \
        >"$W/logs/correio-user.log" 2>&1 \
        || { cat "$W/logs/correio-user.log" >&2; die "correio user add failed"; }
    CMDS[-1]+="  (a random password on standard input)"
    C_CG=$(cg_make correio)
    [ -z "$C_CG" ] || CGROUPS+=("$C_CG")
    note_cmd "$(printf '%q ' "$CORREIO" -c "$cc" serve)2>\$W/logs/correio.log &"
    "$CORREIO" -c "$cc" serve 2>"$W/logs/correio.log" 3>&- &
    CPID=$!
    cg_join "$C_CG" "$CPID"
    # log_level=warn hides event=ready: the first 220 on the port says the server is up.
    wait_banner "$CPORT" "$CPID" || die "correio did not start on 127.0.0.1:$CPORT"
    C_CONC_EFF=$(awk -F' *= *' '/^\[/ { sec = $0 } sec == "[delivery]" && $1 == "max_connections_per_domain" { print $2; exit }' "$cc" || true)

    say "== correio: submission on 127.0.0.1:$CPORT, MX of $RDOMAIN on 127.0.0.1:$SINK_C (DNS on 127.0.0.1:$DNSPORT)"
    sync
    C_BUSY=$(cpu_busy)
    local cpuf=() f
    f=$(cg_file "$C_CG")
    [ -z "$f" ] || cpuf=(-C "$f")
    gen correio -p "$CPORT" -a -n "$N" -c "$S" -l "$L" -f "$SENDER" -d "$RDOMAIN" -h "$HELO" \
        -T "$REPLY_TIMEOUT" -W "$DELIVER_TIMEOUT" -k "$W/logs/sink-correio.out" -P "$SINK_C" \
        -q "$CORREIO -c $cc queue list" -Q "queue is empty" "${cpuf[@]}"
    kill -0 "$CPID" 2>/dev/null || die "correio exited during the run"
    sleep 1   # anything sent twice would show in the sink's count now
    C_SINK=$(sink_kv "$W/logs/sink-correio.out" mesg)
    "$CORREIO" -c "$cc" queue list >"$W/logs/correio-queue.txt" 2>&1 || true
    C_QUEUE=$(grep -c 'queue is empty' "$W/logs/correio-queue.txt" || true)
    note_cmd "kill -TERM <correio serve>"
    kill -TERM "$CPID"
    for _ in $(seq 300); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$CPID" 2>/dev/null && die "correio still running 30 s after SIGTERM"
    rc=0
    wait "$CPID" || rc=$?
    CPID=""
    [ "$rc" = 0 ] || die "correio exited with status $rc on SIGTERM"
    sink_stop
    stop_pid "$DPID"
    DPID=""
    C_WARN=$(grep -cE '^[^ ]+ warn ' "$W/logs/correio.log" || true)
    C_ERR=$(grep -cE '^[^ ]+ error ' "$W/logs/correio.log" || true)
}

# --- 4. Postfix: a private instance -----------------------------------------------------------------
bench_postfix() {
    local conc_cf=""
    [ -z "$CONC" ] || conc_cf="default_destination_concurrency_limit = $CONC"
    sink_start "$SINK_P" postfix
    mkdir -p "$PC" "$W/postfix/queue" "$W/postfix/data"
    chown postfix "$W/postfix/data"
    # master.cf: the system's, with smtpd on 127.0.0.1:$PPORT only and no chroot
    # (a chroot in a scratch queue folder would lack /etc/services, resolv.conf ...).
    awk -v port="$PPORT" '
        /^smtp[ \t]+inet[ \t]/ { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
        /^[^# \t]/ && NF >= 8 { $5 = "n"; print; next }
        { print }' /etc/postfix/master.cf >"$PC/master.cf"
    grep -q "^127.0.0.1:$PPORT inet" "$PC/master.cf" || die "no smtp inet line in /etc/postfix/master.cf"
    printf '%s smtp:[127.0.0.1]:%s\n' "$RDOMAIN" "$SINK_P" >"$PC/transport"
    cat >"$PC/main.cf" <<EOF
# Private benchmark instance (bench/relay.sh). Postfix defaults otherwise,
# including its durability (queue files are fsynced before the 250) and its
# delivery concurrency (default_destination_concurrency_limit = 20, slow start).
compatibility_level = 3.6
config_directory = $PC
queue_directory = $W/postfix/queue
data_directory = $W/postfix/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-relaybench
maillog_file = $W/postfix/maillog
maillog_file_prefixes = $W
myhostname = mx.$DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
mydestination = localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
# The load generator relays as a trusted client (no AUTH: SASL would need Dovecot
# or Cyrus); correio's clients AUTH PLAIN once per connection instead.
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
biff = no
smtpd_client_restrictions =
smtpd_peername_lookup = no
# $RDOMAIN goes straight to its sink: no DNS (correio looks the MX up, cached or not).
transport_maps = texthash:$PC/transport
smtp_dns_support_level = disabled
default_process_limit = 100
$conc_cf
EOF
    postfix -c "$PC" check >"$W/logs/postfix-check.log" 2>&1 \
        || { cat "$W/logs/postfix-check.log" >&2; die "postfix check failed"; }
    P_CONC_EFF=$(postconf -c "$PC" -h default_destination_concurrency_limit 2>/dev/null || echo '?')
    note_cmd "postfix -c \$W/postfix/etc start"
    PF_STARTED=1
    P_CG=$(cg_make postfix)
    [ -z "$P_CG" ] || CGROUPS+=("$P_CG")
    # The subshell joins the cgroup, then becomes `postfix start`: master and every
    # daemon it spawns are counted.
    (cg_join "$P_CG" "$BASHPID"; exec postfix -c "$PC" start) >"$W/logs/postfix-start.log" 2>&1 3>&- \
        || { cat "$W/logs/postfix-start.log" >&2; die "postfix start failed"; }
    wait_banner "$PPORT" || die "Postfix did not answer on 127.0.0.1:$PPORT"
    postfix -c "$PC" status >/dev/null 2>&1 || die "postfix status: master not running"

    say "== Postfix: smtpd on 127.0.0.1:$PPORT, $RDOMAIN to [127.0.0.1]:$SINK_P"
    sync
    P_BUSY=$(cpu_busy)
    local cpuf=() f
    f=$(cg_file "$P_CG")
    [ -z "$f" ] || cpuf=(-C "$f")
    gen postfix -p "$PPORT" -n "$N" -c "$S" -l "$L" -f "$SENDER" -d "$RDOMAIN" -h "$HELO" \
        -T "$REPLY_TIMEOUT" -W "$DELIVER_TIMEOUT" -k "$W/logs/sink-postfix.out" -P "$SINK_P" \
        -q "postqueue -c $PC -p" -Q "Mail queue is empty" "${cpuf[@]}"
    postfix -c "$PC" status >/dev/null 2>&1 || die "Postfix's master exited during the run"
    sleep 1
    P_SINK=$(sink_kv "$W/logs/sink-postfix.out" mesg)
    postqueue -c "$PC" -p >"$W/logs/postfix-queue.txt" 2>&1 || true
    P_QUEUE=$(grep -c 'Mail queue is empty' "$W/logs/postfix-queue.txt" || true)
    note_cmd "postfix -c \$W/postfix/etc stop"
    postfix -c "$PC" stop >/dev/null 2>&1 || die "postfix stop failed"
    PF_STARTED=0
    sink_stop
    P_SENT=$(grep -c 'status=sent' "$W/postfix/maillog" || true)
    P_WARN=$(grep -cE 'warning:' "$W/postfix/maillog" || true)
    P_ERR=$(grep -cE '(error|fatal|panic):' "$W/postfix/maillog" || true)
}

# --- 5. the load, one server at a time (the other is not running) -------------------------------------
if want correio; then bench_correio; fi
if want postfix; then bench_postfix; fi

# --- 6. report ------------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a";
                                           else printf "%.2f", a / b }'; }
both() { want correio && want postfix; }
val() {   # val SERVER WHAT
    local f=$W/logs/gen-$1.out v
    case $2 in
    sub_s) kv "$f" submit seconds ;;
    sub_rate) kv "$f" submit rate ;;
    e2e_s) kv "$f" delivered seconds ;;
    e2e_rate) kv "$f" delivered rate ;;
    sink_s) kv "$f" delivered sink_s ;;
    queue_s) kv "$f" delivered queue_empty_s ;;
    sub_cpu) v=$(kv "$f" server submit_cpu_s); printf '%s' "${v:-n/a}" ;;
    ready_s) kv "$f" sessions ready_s ;;
    ready_cpu) v=$(kv "$f" sessions server_cpu_s); [[ $v != -* ]] || v=n/a; printf '%s' "${v:-n/a}" ;;
    cpu) v=$(kv "$f" server cpu_s); printf '%s' "${v:-n/a}" ;;
    cpu_per_k) v=$(kv "$f" server cpu_s); awk -v c="${v:-n/a}" -v n="$N" \
                   'BEGIN { if (c == "n/a") print "n/a"; else printf "%.2f", 1000 * c / n }' ;;
    sink_at_acc) kv "$f" submit sink_at_accept ;;
    p50) kv "$f" latency p50_ms ;;
    p99) kv "$f" latency p99_ms ;;
    conns) kv "$f" sink_conns max ;;
    gen_busy) kv "$f" generator busy_pct_of_one_cpu ;;
    esac
}
row() { printf '%-46s %12s %12s %16s\n' "$@"; }
line() {  # line LABEL WHAT [noratio]
    local c="" p="" r=""
    want correio && c=$(val correio "$2")
    want postfix && p=$(val postfix "$2")
    both && [ -z "${3:-}" ] && r=$(ratio "$c" "$p")
    row "$1" "${c:--}" "${p:--}" "${r:--}"
}

say ""
say "== Relay: $N messages submitted over $S sessions for $RDOMAIN, whose MX is smtp-sink on 127.0.0.1"
say "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
say "kernel:   $(uname -srm); scratch folder on $fstype ($(df -P "$W" | awk 'NR==2 {print $1}'))"
if want correio; then
    say "correio:  $("$CORREIO" --version 2>/dev/null || echo '?'), binary built $(date -u -r "$CORREIO" +%Y-%m-%dT%H:%M:%SZ), sha256 $(sha256sum "$CORREIO" | cut -c1-12)"
fi
say "Postfix:  $(postconf -d -h mail_version 2>/dev/null) (smtpd, qmgr, smtp; smtp-sink of the same version)"
busy=""
want correio && busy+="${C_BUSY} before correio's load"
both && busy+=", "
want postfix && busy+="${P_BUSY} before Postfix's load"
say "CPU busy: $busy (other work on the machine skews the rates, not the CPU seconds)"
say ""
row "" correio postfix "correio/postfix"
line "submission: msg/s until all accepted (higher)" sub_rate
line "  seconds" sub_s
line "  server CPU s" sub_cpu
line "  all $S sessions ready (EHLO; correio: AUTH) s" ready_s
line "    server CPU s until then" ready_cpu
line "  per-message latency p50 ms (MAIL..250)" p50
line "  per-message latency p99 ms" p99
line "  at the sink when the last was accepted" sink_at_acc noratio
line "end to end: msg/s until queue empty (higher)" e2e_rate
line "  seconds (first connect .. queue empty)" e2e_s
line "  seconds until the sink had all" sink_s
line "  server CPU s, whole run (lower)" cpu
line "  server CPU ms per message (lower)" cpu_per_k
line "  connections to the sink at once, most seen" conns noratio
say ""
say "submission: $N / time from the generator's first connect to the last 250 after DATA."
say "            sessions ready: when the last connection got its 250 to EHLO (correio: its 235 to"
say "            AUTH PLAIN; each AUTH checks the yescrypt hash once). at the sink: what the sink"
say "            had counted at the last 250: how far relaying overlapped submission."
say "            Postfix's smtpd pauses up to in_flow_delay (1 s) before taking a message when"
say "            its queue manager lags: latencies near 1000 ms are that."
say "end to end: $N / time from the first connect until the sink counted $N messages and"
say "            the server's queue was empty (correio: \`correio queue list\` says \"queue is"
say "            empty\"; Postfix: \`postqueue -p\` says \"Mail queue is empty\"), polled every"
say "            5 ms (sink) then 50 ms (queue)."
say "load:       relay_load (one thread, epoll), $S connections, each EHLO once (correio: then"
say "            AUTH PLAIN once, plaintext on loopback with submission.allow_plaintext_auth=yes;"
say "            Postfix: none, the client is in mynetworks), then MAIL/RCPT/DATA pipelined and"
say "            the message, back to back; $L-byte body, one recipient r<i>@$RDOMAIN each."
for s in correio postfix; do
    want $s && say "            generator busy: $(val $s gen_busy)% of one CPU during $s's submission"
done
say "remote:     correio looks up the MX of $RDOMAIN (dnsmasq on 127.0.0.1:$DNSPORT) and sends"
say "            to its port $SINK_C (delivery.remote_smtp_port); Postfix has a transport map"
say "            entry \"$RDOMAIN smtp:[127.0.0.1]:$SINK_P\" (no DNS). Each has a fresh smtp-sink."
if want correio; then
    say "concurrency: correio delivery.max_connections_per_domain = ${C_CONC_EFF:-${CONC:-5 (default)}}"
fi
if want postfix; then
    say "             Postfix default_destination_concurrency_limit = $P_CONC_EFF (initial 5, slow start)"
fi
say "server CPU s: CPU seconds (user + system) of the server's processes (correio: one;"
say "            Postfix: master and every daemon), from a cgroup of their own."
fail=""
if want correio; then
    say "checks:     correio: sink counted $C_SINK messages, queue empty: $([ "$C_QUEUE" -ge 1 ] && echo yes || echo no), $C_WARN warn and $C_ERR error log lines"
    [ "$C_SINK" = "$N" ] || fail+=" correio's sink counted $C_SINK messages, expected $N;"
    [ "$C_QUEUE" -ge 1 ] || fail+=" correio's queue is not empty;"
    [ "$C_ERR" = 0 ] || fail+=" correio logged $C_ERR error lines;"
fi
if want postfix; then
    say "            Postfix: sink counted $P_SINK messages, queue empty: $([ "$P_QUEUE" -ge 1 ] && echo yes || echo no), $P_SENT status=sent, $P_WARN warning and $P_ERR error/fatal/panic lines in maillog"
    [ "$P_SINK" = "$N" ] || fail+=" Postfix's sink counted $P_SINK messages, expected $N;"
    [ "$P_QUEUE" -ge 1 ] || fail+=" Postfix's queue is not empty;"
    [ "$P_ERR" = 0 ] || fail+=" Postfix logged $P_ERR error/fatal/panic lines;"
fi
say ""
say "commands (\$W is the scratch folder; the password of $SENDER is random, in RELAY_LOAD_PASSWORD):"
for c in "${CMDS[@]}"; do say "  $c"; done

if want correio && [ $((C_WARN + C_ERR)) != 0 ]; then
    say ""
    say "correio warn/error log lines (first 20):"
    grep -E '^[^ ]+ (warn|error) ' "$W/logs/correio.log" | head -20
fi
if want postfix && [ $((P_WARN + P_ERR)) != 0 ]; then
    say ""
    say "Postfix warning/error lines (first 20):"
    grep -E '(warning|error|fatal|panic):' "$W/postfix/maillog" | head -20
fi
[ -z "$GEN_FAIL" ] || fail+=" the load generator saw refusals:$GEN_FAIL (see above);"
[ -z "$fail" ] || die "${fail%;}"
STATUS=ok
