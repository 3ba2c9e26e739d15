#!/usr/bin/env bash
# bench/pop3.sh — POP3, correio side by side with Dovecot (`make bench-pop3`).
#
# One run, loopback only (127.0.0.1):
#   1. installs Dovecot (dovecot-core, dovecot-pop3d) when missing, and leaves the
#      system's own Dovecot service stopped; builds the load generator
#      bench/pop3_load.c (cc -O2);
#   2. correio: `correio init` in a scratch folder, 20 accounts p1..p20@bench.test,
#      `serve`; the corpus loaded into every INBOX with IMAP APPEND (not timed);
#   3. Dovecot: a private instance (own base_dir, config, passwd-file, log) on
#      127.0.0.1 with the same 20 users; the corpus written straight into their
#      Maildirs (not timed);
#   4. the corpus: 2,000 generated messages (fixed seed; 2-20 KiB, 30% multipart with
#      a base64 attachment; CRLF lines, some starting with "." so that the servers
#      byte-stuff them), the same bytes in every account of both servers;
#   5. checks, not timed, that every account of both servers answers STAT with 2,000
#      messages and the corpus's octets, and LIST with the corpus's sizes, and that
#      both servers offer PIPELINING in CAPA;
#   6. the measured work, per round (BENCH_POP3_ROUNDS), correio then Dovecot: 20
#      clients at once, one per account, each USER/PASS, LIST, RETR 1..2000 pipelined
#      (16 in flight), every reply un-stuffed and compared byte for byte with the
#      corpus, QUIT without DELE; timed from the first connect to the last QUIT
#      reply. Messages/s, MB/s of message octets, and the server's CPU seconds;
#   7. prints a table with both servers and the ratios, the machine and the commands;
#      stops both servers and removes the scratch folder, even on failure.
#
# Both servers take USER/PASS without TLS here (correio with
# pop3.allow_plaintext_auth=yes, Dovecot with disable_plaintext_auth=no and ssl=no),
# so TLS cost does not dominate the figures. Never do that off loopback.
#
# Run as root (make bench-pop3). Besides the Dovecot packages it leaves two system
# users behind: "correio" (made by `correio init`) and "benchu" (owns Dovecot's
# scratch Maildirs; bench/imap.sh and bench/smtp.sh use it too).
#
# Environment:
#   BENCH_POP3_MESSAGES (2000)   messages in every maildrop
#   BENCH_POP3_ACCOUNTS (20)     accounts, and clients at once (one session per account:
#                                correio allows only one per maildrop)
#   BENCH_POP3_WINDOW   (16)     RETRs in flight per client (1 if a server lacks PIPELINING)
#   BENCH_POP3_ROUNDS   (1)      measured rounds per server (correio, Dovecot, correio, ...)
#   BENCH_POP3_SEED     (1)      seed of the corpus
#   BENCH_POP3_SERVERS  ("correio dovecot")  which servers to run (the ratio needs both)
#   BENCH_KEEP          (0)      1: keep the scratch folder (and say where)
#   BENCH_TMPDIR        (/tmp)   where the scratch folder is made (a real disk, not tmpfs)
#   BENCH_PORT_OFFSET   (22000)  first correio port offset tried (POP3 on 110+offset)
#   CORREIO_BIN         (build/correio)
#
# Exit status: 0 when every server asked for ran, every RETR of every round came back
# with the corpus's bytes, and no server logged an error.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORREIO=${CORREIO_BIN:-$ROOT/build/correio}
N=${BENCH_POP3_MESSAGES:-2000}
A=${BENCH_POP3_ACCOUNTS:-20}
WINDOW=${BENCH_POP3_WINDOW:-16}
ROUNDS=${BENCH_POP3_ROUNDS:-1}
SEED=${BENCH_POP3_SEED:-1}
SERVERS=${BENCH_POP3_SERVERS:-correio dovecot}
KEEP=${BENCH_KEEP:-0}
TMPBASE=${BENCH_TMPDIR:-/tmp}
OFFSET0=${BENCH_PORT_OFFSET:-22000}
DOMAIN=bench.test
USER_FMT="p%d@$DOMAIN"
START_TIMEOUT=30      # seconds a server may take to be ready
LOAD_TIMEOUT=900      # seconds loading the corpus may take, per server
STAT_TIMEOUT=300      # seconds for the STAT/LIST check of every account
RETR_TIMEOUT=900      # seconds one measured round may take
CMD_TIMEOUT=120       # seconds one command may go unanswered before the run stops

for v in N A WINDOW ROUNDS SEED; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "bench: BENCH_POP3_MESSAGES, _ACCOUNTS, _WINDOW, _ROUNDS and _SEED must be positive integers" >&2
        exit 2
    fi
done
[ "$A" -le 200 ] || { echo "bench: BENCH_POP3_ACCOUNTS must be at most 200" >&2; exit 2; }
[ "$WINDOW" -le 128 ] || { echo "bench: BENCH_POP3_WINDOW must be at most 128" >&2; exit 2; }
[ "$ROUNDS" -le 20 ] || { echo "bench: BENCH_POP3_ROUNDS must be at most 20" >&2; exit 2; }
for s in $SERVERS; do
    [[ $s == correio || $s == dovecot ]] || { echo "bench: BENCH_POP3_SERVERS: correio and/or dovecot" >&2; exit 2; }
done

say() { printf '%s\n' "$*"; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }
exec 3>&1
CMDS=()
note_cmd() {   # the scratch folder shown as $W
    local c=$1
    [ -z "${W:-}" ] || c=${c//"$W"/\$W}
    CMDS+=("$c")
    say "+ $c" >&3
}
run_logged() {
    local line
    printf -v line '%q ' "$@"
    note_cmd "${line% }"
    "$@"
}
want() { [[ " $SERVERS " == *" $1 "* ]]; }
both() { want correio && want dovecot; }
SRVS=()
want correio && SRVS+=(correio)
want dovecot && SRVS+=(dovecot)
[ ${#SRVS[@]} -gt 0 ] || { echo "bench: BENCH_POP3_SERVERS names no server" >&2; exit 2; }

# --- 1. packages ---------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (installs Dovecot, runs a private Dovecot instance)"
! want correio || [ -x "$CORREIO" ] || die "$CORREIO missing: run 'make build/correio' (or 'make bench-pop3')"
need_pkgs=()
for p in dovecot-core dovecot-pop3d sqlite3 iproute2 gcc libc6-dev procps; do
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
for t in /usr/sbin/dovecot /usr/bin/doveadm /usr/bin/doveconf /usr/bin/sqlite3 /usr/bin/ss \
         /usr/lib/dovecot/pop3 /usr/lib/dovecot/pop3-login; do
    [ -x "$t" ] || die "$t missing after install"
done
for u in dovecot dovenull; do
    id "$u" >/dev/null 2>&1 || die "system user $u missing (made by the dovecot-core package)"
done

# --- scratch folder and cleanup ------------------------------------------------------------------
W=$(mktemp -d "$TMPBASE/correio-pop3bench.XXXXXX")
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
        for f in "$W"/logs/correio.log "$W"/logs/dovecot.log "$W"/logs/gen-*.err; do
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
    say "bench: WARNING: $W is on tmpfs: the figures are not disk figures"
fi

# --- the load generator ------------------------------------------------------------------------
GEN=$W/pop3_load
run_logged cc -O2 -Wall -Wextra -o "$GEN" "$ROOT/bench/pop3_load.c" >"$W/logs/cc.log" 2>&1 \
    || { cat "$W/logs/cc.log" >&2; die "cannot build bench/pop3_load.c"; }
CMDS[-1]="cc -O2 -Wall -Wextra -o \$W/pop3_load bench/pop3_load.c"
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
export POP3_LOAD_PASSWORD=$PASSWORD    # the generator reads it from there

# --- ports ----------------------------------------------------------------------------------------
port_busy() {
    ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    return 1
}
OFFSET=""
for ((o = OFFSET0; o < OFFSET0 + 400; o += 2)); do
    if ! port_busy $((25 + o)) && ! port_busy $((110 + o)) && ! port_busy $((111 + o)) \
        && ! port_busy $((143 + o)) && ! port_busy $((993 + o)) && ! port_busy $((995 + o)); then
        OFFSET=$o
        break
    fi
done
[ -n "$OFFSET" ] || die "no free ports found from offset $OFFSET0"
CPORT=$((110 + OFFSET))   # correio POP3 (it also listens on 25, 143, 993 and 995 + offset)
CIPORT=$((143 + OFFSET))  # correio IMAP, to load the corpus
DPORT=$((111 + OFFSET))   # Dovecot POP3

# Wait until 127.0.0.1:$1 greets with "+OK" (and the process $2, if given, is alive).
wait_greeting() {
    local port=$1 pid=${2:-} deadline line
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        line=$( (exec 4<>"/dev/tcp/127.0.0.1/$port" || exit 0
                 IFS= read -r -t 5 l <&4 || true
                 printf 'QUIT\r\n' >&4 || true
                 IFS= read -r -t 5 _ <&4 || true
                 printf '%s' "$l") 2>/dev/null || true)
        [[ $line == "+OK"* ]] && return 0
        sleep 0.1
    done
    return 1
}

# CPU accounting as in bench/imap.sh: each server and its processes in a cgroup, whose
# counter the load generator reads (-C) when its measured span starts and ends. Without
# a writable cgroup hierarchy, the generator sums /proc/PID/stat over the server's
# process tree instead (-R: utime+stime+cutime+cstime, so Dovecot's exited pop3
# processes count through their parent, the master).
CG_V1=/sys/fs/cgroup/cpuacct
CG_V2=/sys/fs/cgroup
cg_make() {
    local d=""
    if [ -w "$CG_V1" ] && [ -f "$CG_V1/cpuacct.usage" ]; then
        d=$CG_V1/correio-pop3bench-$$-$1
    elif [ -w "$CG_V2" ] && [ -f "$CG_V2/cgroup.controllers" ]; then
        d=$CG_V2/correio-pop3bench-$$-$1
    fi
    if [ -n "$d" ] && mkdir "$d" 2>/dev/null; then printf '%s' "$d"; fi
}
cg_join() { if [ -n "$1" ]; then { echo "$2" >"$1/cgroup.procs"; } 2>/dev/null || true; fi; }
cpu_args() {   # cpu_args CGROUP ROOTPID: the generator's options for the server's CPU
    local cg=$1
    if [ -n "$cg" ] && [ -f "$cg/cpuacct.usage" ]; then printf '%s\n' -C "$cg/cpuacct.usage"
    elif [ -n "$cg" ] && [ -f "$cg/cpu.stat" ]; then printf '%s\n' -C "$cg/cpu.stat"
    else printf '%s\n' -R "$2"; fi
}
CPU_HOW=""

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

GEN_FAIL=""   # generator runs that reported errors
# Run the generator: gen SERVER PHASE TIMEOUT ARGS... ; output in $W/logs/gen-SERVER-PHASE.{out,err}
gen() {
    local srv=$1 phase=$2 tmo=$3 rc=0 shown
    shift 3
    local out=$W/logs/gen-$srv-$phase.out err=$W/logs/gen-$srv-$phase.err
    shown="pop3_load $*"
    note_cmd "$shown"
    timeout "$tmo" "$GEN" "$@" >"$out" 2>"$err" 3>&- &
    GPID=$!
    wait "$GPID" || rc=$?
    GPID=""
    if [ "$rc" != 0 ]; then
        GEN_FAIL+=" $srv/$phase(exit $rc)"
        say "bench: $srv: pop3_load $phase exited $rc:"
        sed 's/^/    /' "$err" | head -25
        [ "$rc" = 1 ] || die "$srv: pop3_load $phase could not finish (exit $rc$([ "$rc" = 124 ] && echo ', timed out'))"
    fi
    return 0
}

server_alive() {
    case $1 in
    correio) [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null ;;
    dovecot) local mp; mp=$(dovecot_master); [ -n "$mp" ] && kill -0 "$mp" 2>/dev/null ;;
    esac
}

say "== correio-pop3bench in $W ($fstype): $A accounts x $N messages, $ROUNDS round(s); servers: $SERVERS"
say "== USER/PASS without TLS on 127.0.0.1 for both servers (TLS cost left out of the figures)"

# --- 2. correio --------------------------------------------------------------------------------------
C_CG=""
correio_setup() {
    local cc=$W/correio/correio.conf log=$W/logs/correio.log deadline i
    local maxc=$((A > 50 ? A : 50))
    run_logged "$CORREIO" init "$W/correio" --domain "$DOMAIN" --port-offset "$OFFSET" \
        --set server.log_level=warn --set imap.allow_plaintext_auth=yes \
        --set pop3.allow_plaintext_auth=yes --set imap.max_connections_per_ip=$maxc \
        --set pop3.max_connections_per_ip=$maxc >"$W/logs/correio-init.log" 2>&1 \
        || { cat "$W/logs/correio-init.log" >&2; die "correio init failed"; }
    note_cmd "for i in 1..$A: $(printf '%q' "$CORREIO") -c $cc user add p\$i@$DOMAIN --password-stdin  (one random password on standard input)"
    for ((i = 1; i <= A; i++)); do
        "$CORREIO" -c "$cc" user add "p$i@$DOMAIN" --password-stdin <<<"$PASSWORD" \
            >>"$W/logs/correio-user.log" 2>&1 \
            || { cat "$W/logs/correio-user.log" >&2; die "correio user add p$i@$DOMAIN failed"; }
    done
    C_CG=$(cg_make correio)
    [ -z "$C_CG" ] || CGROUPS+=("$C_CG")
    note_cmd "$(printf '%q ' "$CORREIO" -c "$cc" serve)2>\$W/logs/correio.log &"
    "$CORREIO" -c "$cc" serve 2>"$log" 3>&- &
    CPID=$!
    cg_join "$C_CG" "$CPID"
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    until grep -q 'event=ready' "$log" 2>/dev/null; do
        kill -0 "$CPID" 2>/dev/null || die "correio exited at start"
        [ "$(date +%s)" -lt "$deadline" ] || die "correio: no event=ready in its log after ${START_TIMEOUT}s"
        sleep 0.1
    done
    wait_greeting "$CPORT" "$CPID" || die "correio does not greet with +OK on 127.0.0.1:$CPORT (POP3)"

    say "== correio: loading the corpus into $A INBOXes with IMAP APPEND on 127.0.0.1:$CIPORT (not timed)"
    gen correio load "$LOAD_TIMEOUT" append -p "$CIPORT" -a "$A" -u "$USER_FMT" -n "$N" -s "$SEED" \
        -W 32 -T "$CMD_TIMEOUT"
    server_alive correio || die "correio exited during the APPEND load"
    [ "$(kv "$W/logs/gen-correio-load.out" append messages)" = $((A * N)) ] \
        || die "correio: the APPEND load did not store $((A * N)) messages"
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

# --- 3. Dovecot: a private instance ----------------------------------------------------------------
D_CG=""
dovecot_setup() {
    local buid bgid hash i dirs=()
    id benchu >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin benchu
    buid=$(id -u benchu)
    bgid=$(id -g benchu)
    mkdir -p "$W/dovecot/run" "$W/dovecot/state" "$W/dmail"
    : >"$W/dovecot/users"
    DV_HASH="SHA512-CRYPT"
    for ((i = 1; i <= A; i++)); do
        # The same password as correio's accounts, hashed the same way when correio
        # ran: its yescrypt hash (crypt(3), Dovecot's CRYPT scheme); else SHA512-CRYPT.
        hash=""
        if [ -f "$W/correio/data/accounts.sqlite" ]; then
            hash=$(sqlite3 "$W/correio/data/accounts.sqlite" \
                "select hash from accounts where address = 'p$i@$DOMAIN'" 2>/dev/null || true)
        fi
        if [ -n "$hash" ]; then
            hash="{CRYPT}$hash"
            DV_HASH="correio's own (crypt(3) ${hash:7:3}...)"
        else
            hash=$(doveadm -c /dev/null pw -s SHA512-CRYPT -p "$PASSWORD" 2>/dev/null) || die "doveadm pw failed"
        fi
        printf '%s:%s:%s:%s::%s::\n' "p$i@$DOMAIN" "$hash" "$buid" "$bgid" "$W/dmail/p$i" >>"$W/dovecot/users"
        mkdir -p "$W/dmail/p$i"
        dirs+=("$W/dmail/p$i/Maildir")
    done
    chown root:dovecot "$W/dovecot/users"     # read by Dovecot's auth process (user dovecot)
    chmod 640 "$W/dovecot/users"
    say "== Dovecot: writing the corpus into $A Maildirs (not timed)"
    note_cmd "pop3_load maildir -n $N -s $SEED \$W/dmail/p1/Maildir ... \$W/dmail/p$A/Maildir"
    "$GEN" maildir -n "$N" -s "$SEED" "${dirs[@]}" >"$W/logs/gen-dovecot-maildir.out" \
        2>"$W/logs/gen-dovecot-maildir.err" || { cat "$W/logs/gen-dovecot-maildir.err" >&2; die "writing the Maildirs failed"; }
    chown -R benchu:benchu "$W/dmail"
    cat >"$DC" <<EOF
# Private benchmark instance (bench/pop3.sh). Dovecot's defaults otherwise.
base_dir = $W/dovecot/run
state_dir = $W/dovecot/state
instance_name = dovecot-pop3bench
protocols = pop3
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
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DPORT
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF
    if [ "$A" -gt 80 ]; then   # one pop3 and (while logging in) one pop3-login process per client
        printf 'default_process_limit = %d\n' $((A + 50)) >>"$DC"
    fi
    doveconf -c "$DC" -n >"$W/logs/doveconf.log" 2>&1 \
        || { cat "$W/logs/doveconf.log" >&2; die "doveconf rejects $DC"; }
    D_CG=$(cg_make dovecot)
    [ -z "$D_CG" ] || CGROUPS+=("$D_CG")
    note_cmd "dovecot -c \$W/dovecot/dovecot.conf"
    DV_STARTED=1
    # The subshell joins the cgroup, then becomes dovecot: the master and every
    # process it spawns are counted.
    (cg_join "$D_CG" "$BASHPID"; exec dovecot -c "$DC") >"$W/logs/dovecot-start.log" 2>&1 3>&- \
        || { cat "$W/logs/dovecot-start.log" >&2; die "dovecot did not start"; }
    wait_greeting "$DPORT" || die "Dovecot does not greet with +OK on 127.0.0.1:$DPORT"
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

port_of() { if [ "$1" = correio ]; then printf '%s' "$CPORT"; else printf '%s' "$DPORT"; fi; }
root_of() { if [ "$1" = correio ]; then printf '%s' "$CPID"; else dovecot_master; fi; }
cg_of() { if [ "$1" = correio ]; then printf '%s' "$C_CG"; else printf '%s' "$D_CG"; fi; }

# --- 4. load both, then check both (not timed) ---------------------------------------------------
if want correio; then correio_setup; fi
if want dovecot; then dovecot_setup; fi
sync

declare -A STAT_N STAT_OCT PIPE
for s in "${SRVS[@]}"; do
    say "== $s: STAT and LIST of every account (not timed)"
    gen "$s" stat "$STAT_TIMEOUT" stat -p "$(port_of "$s")" -a "$A" -u "$USER_FMT" -n "$N" -s "$SEED" \
        -T "$CMD_TIMEOUT"
    server_alive "$s" || die "$s exited during the STAT check"
    f=$W/logs/gen-$s-stat.out
    STAT_N[$s]=$(kv "$f" stattotal messages_each)
    STAT_OCT[$s]=$(kv "$f" stattotal octets_each)
    PIPE[$s]=$(kv "$f" capa pipelining)
    if [ "$(kv "$f" stattotal all_same)" != 1 ] || [ "$(kv "$f" stattotal matches_corpus)" != 1 ]; then
        say "bench: $s: STAT per account:"
        grep '^stat ' "$f" | sed 's/^/    /'
        say "    the corpus: $(kv "$f" stattotal corpus_messages) messages, $(kv "$f" stattotal corpus_octets) octets"
        die "$s: STAT differs from the corpus (see above)"
    fi
done
CORPUS_LINE=$(grep -m1 '^corpus' "$W/logs/gen-${SRVS[0]}-stat.out" | cut -d' ' -f2-)
if both && { [ "${STAT_N[correio]}" != "${STAT_N[dovecot]}" ] || [ "${STAT_OCT[correio]}" != "${STAT_OCT[dovecot]}" ]; }; then
    die "STAT differs: correio ${STAT_N[correio]} messages ${STAT_OCT[correio]} octets, Dovecot ${STAT_N[dovecot]} messages ${STAT_OCT[dovecot]} octets"
fi
WIN=$WINDOW
NOPIPE=""
for s in "${SRVS[@]}"; do [ "${PIPE[$s]}" = 1 ] || NOPIPE+=" $s"; done
if [ -n "$NOPIPE" ]; then
    WIN=1
    say "== no PIPELINING in CAPA of:$NOPIPE: one RETR at a time for every server"
fi
for s in "${SRVS[@]}"; do [ -n "$(cg_of "$s")" ] && CPU_HOW+=" $s:cgroup" || CPU_HOW+=" $s:/proc"; done

# --- 5. the measured rounds ----------------------------------------------------------------------
declare -A BUSY
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SRVS[@]}"; do
        sync
        BUSY[$s.$r]=$(cpu_busy)
        say "== round $r: $s on 127.0.0.1:$(port_of "$s"): $A clients x (USER/PASS, LIST, RETR 1..$N, QUIT)"
        mapfile -t cpuo < <(cpu_args "$(cg_of "$s")" "$(root_of "$s")")
        gen "$s" "retr-$r" "$RETR_TIMEOUT" retr -p "$(port_of "$s")" -a "$A" -u "$USER_FMT" -n "$N" \
            -s "$SEED" -W "$WIN" -T "$CMD_TIMEOUT" "${cpuo[@]}"
        server_alive "$s" || die "$s exited during round $r"
        f=$W/logs/gen-$s-retr-$r.out
        say "   $(grep '^retr' "$f" | cut -d' ' -f2-)"
    done
done

# --- 6. stop, logs ----------------------------------------------------------------------------------
C_WARN=0 C_ERR=0 D_WARN=0 D_ERR=0
if want correio; then
    correio_stop
    C_WARN=$(grep -cE '^[^ ]+ warn ' "$W/logs/correio.log" || true)
    C_ERR=$(grep -cE '^[^ ]+ error ' "$W/logs/correio.log" || true)
fi
if want dovecot; then
    dovecot_stop
    # doveadm stop's own SIGTERM to the master is logged as a Warning: not counted.
    D_WARN=$(grep -E 'Warning:' "$W/logs/dovecot.log" | grep -cv 'master: Warning: Killed with signal 15' || true)
    D_ERR=$(grep -cE '(Error|Fatal|Panic):' "$W/logs/dovecot.log" || true)
fi

# --- 7. report ---------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || a == "-" || b == "-" || b + 0 == 0) print "n/a";
                                           else printf "%.2f", a / b }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.1f}" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a";
                                                        else printf f, a / b }'; }
val() {   # val SERVER ROUND WHAT
    local f=$W/logs/gen-$1-retr-$2.out v
    case $3 in
    rate) kv "$f" retr rate ;;
    mbs) kv "$f" retr mb_s ;;
    secs) kv "$f" retr seconds ;;
    verified) kv "$f" retr verified ;;
    cpu) v=$(kv "$f" server cpu_s); printf '%s' "${v:-n/a}" ;;
    per_cpu) v=$(kv "$f" server cpu_s); div "$(kv "$f" retr verified)" "${v:-n/a}" "%.0f" ;;
    login50) kv "$f" login p50_ms ;;
    loginmax) kv "$f" login max_ms ;;
    sessmin) kv "$f" session min_s ;;
    sessmax) kv "$f" session max_s ;;
    genbusy) kv "$f" generator busy_pct_of_one_cpu ;;
    wire) kv "$f" retr wire_octets ;;
    esac
}
median() { tr ' ' '\n' | grep -v '^$' | grep -v 'n/a' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a";
           else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
row() { printf '%-46s %12s %12s %16s\n' "$@"; }
line() {  # line LABEL ROUND WHAT
    local c="" d="" r=""
    want correio && c=$(val correio "$2" "$3")
    want dovecot && d=$(val dovecot "$2" "$3")
    both && r=$(ratio "$c" "$d")
    row "$1" "${c:--}" "${d:--}" "${r:--}"
}
mline() {  # mline LABEL WHAT: the median over the rounds
    local c="" d="" r="" s k vs
    for s in correio dovecot; do
        want "$s" || continue
        vs=""
        for ((k = 1; k <= ROUNDS; k++)); do vs+=" $(val "$s" "$k" "$2")"; done
        if [ "$s" = correio ]; then c=$(median <<<"$vs"); else d=$(median <<<"$vs"); fi
    done
    both && r=$(ratio "$c" "$d")
    row "$1" "${c:--}" "${d:--}" "${r:--}"
}

say ""
say "== POP3: correio and Dovecot on 127.0.0.1, USER/PASS, no TLS; $A clients at once, one per account"
say "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
say "kernel:   $(uname -srm); scratch folder on $fstype ($(df -P "$W" | awk 'NR==2 {print $1}'))"
if want correio; then
    say "correio:  $("$CORREIO" --version 2>/dev/null || echo '?'), binary built $(date -u -r "$CORREIO" +%Y-%m-%dT%H:%M:%SZ), sha256 $(sha256sum "$CORREIO" | cut -c1-12)"
fi
say "Dovecot:  $(dovecot --version 2>/dev/null | head -1)"
say "corpus:   $CORPUS_LINE  (seed $SEED; the same bytes in every account of both servers)"
stats=""
for s in "${SRVS[@]}"; do stats+="${stats:+; }$s ${STAT_N[$s]} messages, ${STAT_OCT[$s]} octets"; done
say "STAT:     every account: $stats$(both && echo ' (equal)')"
pipes=""
for s in "${SRVS[@]}"; do pipes+="${pipes:+, }$s $([ "${PIPE[$s]}" = 1 ] && echo yes || echo no)"; done
say "PIPELINING in CAPA: $pipes; RETRs in flight per client: $WIN"
busy=""
for ((r = 1; r <= ROUNDS; r++)); do for s in "${SRVS[@]}"; do busy+="${busy:+, }${BUSY[$s.$r]} before $s round $r"; done; done
say "CPU busy: $busy (other work on the machine skews the rates, not the CPU seconds)"
say ""
row "" correio dovecot "correio/dovecot"
for ((r = 1; r <= ROUNDS; r++)); do
    line "round $r: messages/s (higher better)" "$r" rate
    line "  MB/s of message octets (higher better)" "$r" mbs
    line "  seconds, first connect to last QUIT reply" "$r" secs
    line "  RETRs verified" "$r" verified
    line "  server CPU s (lower better)" "$r" cpu
    line "  messages per server CPU second (higher)" "$r" per_cpu
    line "  login (connect to PASS +OK) p50 ms" "$r" login50
    line "  login max ms" "$r" loginmax
    line "  session, fastest client s" "$r" sessmin
    line "  session, slowest client s" "$r" sessmax
done
if [ "$ROUNDS" -gt 1 ]; then
    mline "median of $ROUNDS rounds: messages/s" rate
    mline "  MB/s" mbs
    mline "  server CPU s" cpu
fi
say ""
say "each round: $A clients connect at once, one per account p1..p$A@$DOMAIN; each sends CAPA,"
say "         USER, PASS, LIST (must list $N messages with the corpus's sizes), RETR 1..$N with up"
say "         to $WIN in flight, then QUIT (no DELE). Every RETR reply is read to its \".\" line,"
say "         un-stuffed, and compared byte for byte with the corpus message; its octets must equal"
say "         LIST's size. Rounds alternate between the servers; both stay running, the idle one"
say "         does nothing. The message files were loaded before round 1 and are in the page cache."
wire=""
for s in "${SRVS[@]}"; do wire+="${wire:+, }$s $(val "$s" 1 wire)"; done
say "MB/s:    10^6 octets of message content (un-stuffed) per second. Octets received per round,"
say "         with the status lines and the stuffing dots: $wire"
say "server CPU s: CPU seconds (user + system) of the server's processes over the round and"
say "         0.5 s after it (Dovecot's pop3 processes exit after QUIT), from$CPU_HOW"
say "         (cgroup: the server's own cgroup counter; /proc: utime+stime+cutime+cstime of"
say "         its process tree)."
for s in "${SRVS[@]}"; do
    g=""
    for ((r = 1; r <= ROUNDS; r++)); do g+="${g:+, }$(val "$s" "$r" genbusy)%"; done
    say "load generator (one thread, epoll), $s: $g of one CPU"
done
want correio && say "correio:  the corpus loaded with IMAP APPEND (flags \\Seen), LITERAL+, before round 1"
want dovecot && say "Dovecot:  the corpus written into Maildir/cur (flag S, names with S= and W=) before round 1;"
want dovecot && say "          its first login per account (the STAT check) built the indexes; password hash: $DV_HASH"
want correio && say "checks:   correio: $C_WARN warn and $C_ERR error log lines"
want dovecot && say "checks:   Dovecot: $D_WARN Warning and $D_ERR Error/Fatal/Panic log lines"
say ""
say "commands:"
for c in "${CMDS[@]}"; do say "  $c"; done
say "  (the password of every account is random, given in POP3_LOAD_PASSWORD; \$W is the scratch folder)"

fail=""
if want correio && [ $((C_WARN + C_ERR)) != 0 ]; then
    say ""
    say "correio warn/error log lines (first 20):"
    grep -hE '^[^ ]+ (warn|error) ' "$W/logs/correio.log" | head -20
    [ "$C_ERR" = 0 ] || fail+=" correio logged $C_ERR error lines;"
fi
if want dovecot && [ $((D_WARN + D_ERR)) != 0 ]; then
    say ""
    say "Dovecot warning/error lines (first 20):"
    grep -E '(Warning|Error|Fatal|Panic):' "$W/logs/dovecot.log" \
        | grep -v 'master: Warning: Killed with signal 15' | head -20
    [ "$D_ERR" = 0 ] || fail+=" Dovecot logged $D_ERR error lines;"
fi
for s in "${SRVS[@]}"; do
    for ((r = 1; r <= ROUNDS; r++)); do
        [ "$(val "$s" "$r" verified)" = $((A * N)) ] || fail+=" $s round $r: $(val "$s" "$r" verified) of $((A * N)) RETRs verified;"
    done
done
[ -z "$GEN_FAIL" ] || fail+=" the load generator saw errors:$GEN_FAIL (see above);"
[ -z "$fail" ] || die "${fail%;}"
STATUS=ok
