#!/usr/bin/env bash
# bench/smtp.sh — SMTP ingestion, correio side by side with Postfix (`make bench-smtp`).
#
# One run, loopback only (127.0.0.1):
#   1. installs Postfix (for /usr/sbin/smtp-source and postfix itself) when missing;
#   2. correio: `correio init` in a scratch folder, one account u@bench.test, `serve`;
#   3. Postfix: a private instance (own config, queue and data directories in the
#      scratch folder) on 127.0.0.1, virtual Maildir delivery of u@bench.test;
#   4. the same smtp-source load against each, one server at a time;
#   5. prints messages/s accepted and on disk for both, the CPU seconds each
#      server used (each runs in a cgroup of its own), and the ratios;
#   6. stops both servers and removes the scratch folder, even on failure.
#
# Run as root (make bench-smtp). Besides the Postfix package it leaves two system
# users behind: "correio" (made by `correio init`) and "benchu" (owns Postfix's
# scratch Maildir).
#
# Environment:
#   BENCH_MESSAGES (5000)   messages per server
#   BENCH_SESSIONS (20)     parallel SMTP sessions (smtp-source -s)
#   BENCH_SIZE     (4096)   message payload in bytes (smtp-source -l)
#   BENCH_KEEP     (0)      1: keep the scratch folder (and say where)
#   BENCH_TMPDIR   (/tmp)   where the scratch folder is made (must be a real disk:
#                           on tmpfs fsync costs nothing and the figures mean little)
#   BENCH_PORT_OFFSET (20000)  first correio port offset tried (SMTP on 25+offset)
#   BENCH_SERVERS  ("correio postfix")  which servers to run (the ratio needs both)
#   CORREIO_BIN    (build/correio)
#
# Exit status: 0 when both servers ran and every message is where it should be.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORREIO=${CORREIO_BIN:-$ROOT/build/correio}
N=${BENCH_MESSAGES:-5000}
S=${BENCH_SESSIONS:-20}
L=${BENCH_SIZE:-4096}
KEEP=${BENCH_KEEP:-0}
TMPBASE=${BENCH_TMPDIR:-/tmp}
OFFSET0=${BENCH_PORT_OFFSET:-20000}
SERVERS=${BENCH_SERVERS:-correio postfix}
DOMAIN=bench.test
RCPT=u@$DOMAIN
SENDER=sender@example.org
HELO=client.example.org
DISK_TIMEOUT=300      # seconds to wait for the last message to reach the mailbox
LOAD_TIMEOUT=900      # seconds smtp-source may run against one server
START_TIMEOUT=20      # seconds a server may take to answer its first 220

for v in N S L; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "bench: BENCH_MESSAGES, BENCH_SESSIONS and BENCH_SIZE must be positive integers" >&2
        exit 2
    fi
done

say() { printf '%s\n' "$*"; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }
now() { printf '%s' "$EPOCHREALTIME"; }
# Commands that matter for the figures are echoed (on fd 3: stdout, even when the
# command's own output goes to a log) and kept for the summary.
exec 3>&1
CMDS=()
run_logged() {
    local line
    printf -v line '%q ' "$@"
    CMDS+=("${line% }")
    say "+ ${line% }" >&3
    "$@"
}

# --- 1. packages -----------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (installs Postfix, runs a private Postfix instance)"
[[ " $SERVERS " != *" correio "* ]] || [ -x "$CORREIO" ] || die "$CORREIO missing: run 'make build/correio' (or 'make bench-smtp')"
need_pkgs=()
for p in postfix sqlite3 iproute2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing Debian packages: ${need_pkgs[*]}"
    # "No configuration": the package writes no main.cf and starts nothing useful.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" \
        >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
    # Whatever the package may have started, the system's own instance stays stopped.
    postfix stop >/dev/null 2>&1 || true
    service postfix stop >/dev/null 2>&1 || true
fi
for t in /usr/sbin/postfix /usr/sbin/smtp-source /usr/sbin/postconf /usr/bin/sqlite3 /usr/bin/ss; do
    [ -x "$t" ] || die "$t missing after install"
done

# --- scratch folder and cleanup -----------------------------------------------------
W=$(mktemp -d "$TMPBASE/correio-bench.XXXXXX")
chmod 755 "$W"          # the correio, postfix and benchu users must traverse it
PC=$W/postfix/etc       # the private Postfix instance's config_directory
CPID=""
LPID=""
PF_STARTED=0
STATUS=fail

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$LPID" ]; then kill -TERM "$LPID" 2>/dev/null || true; wait "$LPID" 2>/dev/null || true; fi
    if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then
        kill -TERM "$CPID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$CPID" 2>/dev/null; then kill -KILL "$CPID" 2>/dev/null || true; fi
        wait "$CPID" 2>/dev/null || true
    fi
    if [ "$PF_STARTED" = 1 ]; then
        postfix -c "$PC" stop >/dev/null 2>&1 || postfix -c "$PC" abort >/dev/null 2>&1 || true
    fi
    if [ "$STATUS" != ok ]; then
        for f in "$W/logs/correio.log" "$W/postfix/maillog" "$W/logs/smtp-source-correio.log" \
                 "$W/logs/smtp-source-postfix.log"; do
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

# --- ports ------------------------------------------------------------------------------
port_busy() {
    ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    return 1
}
OFFSET=""
for ((o = OFFSET0; o < OFFSET0 + 200; o += 2)); do
    if ! port_busy $((25 + o)) && ! port_busy $((26 + o)); then OFFSET=$o; break; fi
done
[ -n "$OFFSET" ] || die "no free port pair found from $((25 + OFFSET0))"
CPORT=$((25 + OFFSET))   # correio
PPORT=$((26 + OFFSET))   # Postfix

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

# CPU accounting: each server and all its processes (Postfix: master and every
# daemon it spawns) run in a cgroup of their own, so the CPU seconds a server
# spent on the load can be read whatever else runs on the machine.
# cgroup v1 (cpuacct.usage, ns) or v2 (cpu.stat usage_usec); "n/a" without either.
CG_V1=/sys/fs/cgroup/cpuacct
CG_V2=/sys/fs/cgroup
CGROUPS=()
cg_make() {   # cg_make NAME -> prints the cgroup folder, or nothing
    local d=""
    if [ -w "$CG_V1" ] && [ -f "$CG_V1/cpuacct.usage" ]; then
        d=$CG_V1/correio-bench-$$-$1
    elif [ -w "$CG_V2" ] && [ -f "$CG_V2/cgroup.controllers" ]; then
        d=$CG_V2/correio-bench-$$-$1
    fi
    if [ -n "$d" ] && mkdir "$d" 2>/dev/null; then printf '%s' "$d"; fi
}
cg_join() {   # cg_join CGROUP PID
    if [ -n "$1" ]; then { echo "$2" >"$1/cgroup.procs"; } 2>/dev/null || true; fi
}
cg_usage() {  # cg_usage CGROUP -> CPU seconds used so far, or n/a
    if [ -n "$1" ] && [ -f "$1/cpuacct.usage" ]; then
        awk '{ printf "%.3f", $1 / 1e9 }' "$1/cpuacct.usage"
    elif [ -n "$1" ] && [ -f "$1/cpu.stat" ]; then
        awk '$1 == "usage_usec" { printf "%.3f", $2 / 1e6 }' "$1/cpu.stat"
    else
        printf 'n/a'
    fi
}
cpu_delta() { [[ $1 == n/a || $2 == n/a ]] && { printf 'n/a'; return; }
              awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# Count regular files directly in a folder.
count_files() { { find "$1" -mindepth 1 -maxdepth 1 -type f 2>/dev/null || true; } | wc -l; }

# Poll folder $1 every 0.1 s until it holds $N files; print the time it happened.
wait_files() {
    local dir=$1 deadline c
    deadline=$(( $(date +%s) + DISK_TIMEOUT ))
    while :; do
        c=$(count_files "$dir")
        if [ "$c" -ge "$N" ]; then now; return 0; fi
        [ "$(date +%s)" -ge "$deadline" ] && { echo "$c" >"$W/logs/last-count"; return 1; }
        sleep 0.1
    done
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

# Run the load against port $1, its output to $2; sets LOAD_T0, LOAD_T1 and
# LOAD_BUSY (the CPU use by other work in the second before).
load() {
    local port=$1 log=$2 t0 t1 rc=0
    sync
    LOAD_BUSY=$(cpu_busy)
    local cmd=(/usr/sbin/smtp-source -4 -s "$S" -m "$N" -l "$L" -M "$HELO" -f "$SENDER" -t "$RCPT"
               "127.0.0.1:$port")
    CMDS+=("${cmd[*]}")
    say "+ ${cmd[*]}"
    t0=$(now)
    # In the background, so that a signal to this script is handled at once.
    timeout "$LOAD_TIMEOUT" "${cmd[@]}" >"$log" 2>&1 3>&- &
    LPID=$!
    wait "$LPID" || rc=$?
    t1=$(now)
    LPID=""
    [ "$rc" = 0 ] || return "$rc"
    LOAD_T0=$t0
    LOAD_T1=$t1
}

rate() { awk -v n="$N" -v t="$1" 'BEGIN { printf "%.1f", (t > 0 ? n / t : 0) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

want() { [[ " $SERVERS " == *" $1 "* ]]; }

say "== correio-bench in $W ($fstype): $N messages of $L bytes over $S sessions; servers: $SERVERS"

# --- 2. correio: set up, load, check, stop ------------------------------------------------------
bench_correio() {
    local cc=$W/correio/correio.conf pw cmsg rc
    run_logged "$CORREIO" init "$W/correio" --domain "$DOMAIN" --port-offset "$OFFSET" \
        --set server.log_level=warn >"$W/logs/correio-init.log" 2>&1 \
        || { cat "$W/logs/correio-init.log" >&2; die "correio init failed"; }
    pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    run_logged "$CORREIO" -c "$cc" user add "$RCPT" --password-stdin <<<"$pw" \
        >"$W/logs/correio-user.log" 2>&1 \
        || { cat "$W/logs/correio-user.log" >&2; die "correio user add failed"; }
    CMDS[-1]+="  (a random password on standard input)"
    CMDS+=("$(printf '%q ' "$CORREIO" -c "$cc" serve)2>$W/logs/correio.log &")
    say "+ ${CMDS[-1]}"
    "$CORREIO" -c "$cc" serve 2>"$W/logs/correio.log" 3>&- &
    CPID=$!
    C_CG=$(cg_make correio)
    [ -z "$C_CG" ] || CGROUPS+=("$C_CG")
    cg_join "$C_CG" "$CPID"
    # event=ready is logged at level info, which log_level=warn hides: the
    # first 220 on the port is what says the server is up.
    wait_banner "$CPORT" "$CPID" || die "correio did not start on 127.0.0.1:$CPORT"

    say "== correio on 127.0.0.1:$CPORT"
    cpu0=$(cg_usage "$C_CG")
    load "$CPORT" "$W/logs/smtp-source-correio.log" || die "smtp-source against correio failed"
    C_T0=$LOAD_T0 C_T1=$LOAD_T1 C_BUSY=$LOAD_BUSY
    cmsg=$W/correio/data/mail/$DOMAIN/u/msg
    C_T2=$(wait_files "$cmsg") ||
        die "correio: $(cat "$W/logs/last-count") of $N message files in $cmsg after ${DISK_TIMEOUT}s"
    C_CPU=$(cpu_delta "$cpu0" "$(cg_usage "$C_CG")")
    kill -0 "$CPID" 2>/dev/null || die "correio exited during the run"
    C_FILES=$(count_files "$cmsg")
    C_ROWS=$(sqlite3 "$W/correio/data/mail/$DOMAIN/u/index.sqlite" \
        "select count(*) from messages" 2>&1) || die "correio: cannot count the index rows: $C_ROWS"
    kill -TERM "$CPID"
    for _ in $(seq 300); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$CPID" 2>/dev/null && die "correio still running 30 s after SIGTERM"
    rc=0
    wait "$CPID" || rc=$?
    CPID=""
    [ "$rc" = 0 ] || die "correio exited with status $rc on SIGTERM"
    C_PROBLEMS=$(grep -cE ' (warn|error) ' "$W/logs/correio.log" || true)
}

# --- 3. Postfix: a private instance; set up, load, check, stop --------------------------------
bench_postfix() {
    local pnew buid bgid
    id benchu >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin benchu
    buid=$(id -u benchu)
    bgid=$(id -g benchu)
    mkdir -p "$PC" "$W/postfix/queue" "$W/postfix/data" "$W/vmail"
    chown postfix "$W/postfix/data"
    chown benchu:benchu "$W/vmail"
    # master.cf: the system's, with smtpd on 127.0.0.1:$PPORT only and no chroot
    # (a chroot in a scratch queue folder would lack /etc/services, resolv.conf ...).
    awk -v port="$PPORT" '
        /^smtp[ \t]+inet[ \t]/ { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
        /^[^# \t]/ && NF >= 8 { $5 = "n"; print; next }
        { print }' /etc/postfix/master.cf >"$PC/master.cf"
    grep -q "^127.0.0.1:$PPORT inet" "$PC/master.cf" || die "no smtp inet line in /etc/postfix/master.cf"
    printf '%s  %s/u/\n' "$RCPT" "$DOMAIN" >"$PC/vmailbox"
    cat >"$PC/main.cf" <<EOF
# Private benchmark instance (bench/smtp.sh). Postfix defaults otherwise,
# including its durability: queue files and Maildir files are fsynced.
compatibility_level = 3.6
config_directory = $PC
queue_directory = $W/postfix/queue
data_directory = $W/postfix/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = $W/postfix/maillog
maillog_file_prefixes = $W
myhostname = mx.$DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
mydestination = localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
biff = no
# Nothing on this closed network to look up.
smtpd_client_restrictions =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
default_process_limit = 100
# u@$DOMAIN -> $W/vmail/$DOMAIN/u/ (trailing slash: Maildir)
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $W/vmail
virtual_mailbox_maps = texthash:$PC/vmailbox
virtual_uid_maps = static:$buid
virtual_gid_maps = static:$bgid
EOF
    postfix -c "$PC" check >"$W/logs/postfix-check.log" 2>&1 \
        || { cat "$W/logs/postfix-check.log" >&2; die "postfix check failed"; }
    CMDS+=("postfix -c $PC start")
    say "+ ${CMDS[-1]}"
    PF_STARTED=1
    P_CG=$(cg_make postfix)
    [ -z "$P_CG" ] || CGROUPS+=("$P_CG")
    # The subshell joins the cgroup, then becomes `postfix start`: master and
    # every daemon it spawns are counted.
    (cg_join "$P_CG" "$BASHPID"; exec postfix -c "$PC" start) >"$W/logs/postfix-start.log" 2>&1 3>&- \
        || { cat "$W/logs/postfix-start.log" >&2; die "postfix start failed"; }
    wait_banner "$PPORT" || die "Postfix did not answer on 127.0.0.1:$PPORT"
    postfix -c "$PC" status >/dev/null 2>&1 || die "postfix status: master not running"

    say "== Postfix on 127.0.0.1:$PPORT"
    cpu0=$(cg_usage "$P_CG")
    load "$PPORT" "$W/logs/smtp-source-postfix.log" || die "smtp-source against Postfix failed"
    P_T0=$LOAD_T0 P_T1=$LOAD_T1 P_BUSY=$LOAD_BUSY
    pnew=$W/vmail/$DOMAIN/u/new
    P_T2=$(wait_files "$pnew") ||
        die "Postfix: $(cat "$W/logs/last-count") of $N messages in $pnew after ${DISK_TIMEOUT}s"
    P_CPU=$(cpu_delta "$cpu0" "$(cg_usage "$P_CG")")
    P_FILES=$(count_files "$pnew")
    CMDS+=("postfix -c $PC stop")
    postfix -c "$PC" stop >/dev/null 2>&1 || die "postfix stop failed"
    PF_STARTED=0
    P_SENT=$(grep -c 'status=sent' "$W/postfix/maillog" || true)
    P_PROBLEMS=$(grep -cE '(warning|error|fatal|panic):' "$W/postfix/maillog" || true)
}

# --- 4. the load, one server at a time (the other is not running) --------------------------------
if want correio; then bench_correio; fi
if want postfix; then bench_postfix; fi

# --- 5. report --------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
row() { printf '%-16s %9s %10s %15s %14s %11s\n' "$@"; }

say ""
say "== SMTP ingestion: $N messages, $L-byte payload, $S parallel sessions, one connection per message"
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
say "Postfix:  $(postconf -d -h mail_version 2>/dev/null)"
busy=""
want correio && busy+="${C_BUSY} before correio's load"
want correio && want postfix && busy+=", "
want postfix && busy+="${P_BUSY} before Postfix's load"
say "CPU busy: $busy (other work on the machine skews the figures)"
say ""
row server "accept s" "on disk s" "accepted msg/s" "on disk msg/s" "server CPU s"
fail=""
if want correio; then
    ca=$(secs "$C_T0" "$C_T1") cd=$(secs "$C_T0" "$C_T2")
    rca=$(rate "$ca") rcd=$(rate "$cd")
    row correio "$ca" "$cd" "$rca" "$rcd" "$C_CPU"
    [ "$C_FILES" -eq "$N" ] || fail+=" correio has $C_FILES message files, expected $N;"
    [ "$C_ROWS" = "$N" ] || fail+=" correio's index has $C_ROWS rows, expected $N;"
fi
if want postfix; then
    pa=$(secs "$P_T0" "$P_T1") pd=$(secs "$P_T0" "$P_T2")
    rpa=$(rate "$pa") rpd=$(rate "$pd")
    row postfix "$pa" "$pd" "$rpa" "$rpd" "$P_CPU"
    [ "$P_FILES" -eq "$N" ] || fail+=" Postfix has $P_FILES Maildir files, expected $N;"
fi
if want correio && want postfix; then
    cr=n/a
    [[ $C_CPU == n/a || $P_CPU == n/a ]] || cr=$(ratio "$C_CPU" "$P_CPU")
    row "correio/postfix" "" "" "$(ratio "$rca" "$rpa")" "$(ratio "$rcd" "$rpd")" "$cr"
fi
say ""
say "accepted: $N / wall time of smtp-source (it ends after the last 250 to DATA)."
say "on disk:  $N / time from smtp-source's start until all $N messages are files in the"
say "          mailbox (correio: data/mail/$DOMAIN/u/msg/; Postfix: Maildir new/), polled every 0.1 s."
say "server CPU s: CPU seconds (user + system) of the server's processes over the same"
say "          span, from its own cgroup: unlike the rates, not skewed by other work on the machine."
if want correio; then
    say "checks:   correio: $C_FILES message files, $C_ROWS index rows, $C_PROBLEMS warn/error log lines"
fi
if want postfix; then
    say "checks:   Postfix: $P_FILES files in new/, $P_SENT status=sent, $P_PROBLEMS warning/error lines in maillog"
fi
say ""
say "commands:"
for c in "${CMDS[@]}"; do say "  $c"; done

if want correio && [ "$C_PROBLEMS" != 0 ]; then
    say ""
    say "correio warn/error log lines (first 20):"
    grep -E ' (warn|error) ' "$W/logs/correio.log" | head -20
fi
if want postfix && [ "$P_PROBLEMS" != 0 ]; then
    say ""
    say "Postfix warning/error lines (first 20):"
    grep -E '(warning|error|fatal|panic):' "$W/postfix/maillog" | head -20
fi
[ -z "$fail" ] || die "${fail%;}"
STATUS=ok
