#!/bin/sh
# Regenerate the Dovecot oracle answers for the shared MIME corpus.
#
# For every message in the corpus (every file but README.md and LICENSE*) (default ../shared/corpus/mime from the
# project root), a private Dovecot (Debian package dovecot-imapd, run as
# root, listening on 127.0.0.1:$PORT only, with a throw-away maildir and a
# passwd-file user) gets the message by IMAP APPEND (Python imaplib, which
# sends CRLF line endings) and answers
#     FETCH n (ENVELOPE BODY BODYSTRUCTURE)
# The text between "* n FETCH (" and the final ")" is written, as received,
# to tests/unit/mime_expected/<message file name>.fetch. test_mime_corpus.c
# compares correio's output with these files. Empty files are skipped
# (Dovecot refuses an empty APPEND). The instance is stopped and
# its directory removed at the end.
#
# usage: tests/unit/mime_expected/regen.sh [corpus-dir] [port]
set -eu
cd "$(dirname "$0")/../../.."
CORPUS=${1:-../shared/corpus/mime}
PORT=${2:-14143}
OUT=tests/unit/mime_expected
[ -d "$CORPUS" ] || { echo "no corpus at $CORPUS"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (Dovecot drops to its own users)"; exit 1; }
command -v dovecot >/dev/null || { echo "install dovecot-imapd first"; exit 1; }

T=$(mktemp -d /tmp/correio-dovecot-XXXXXX)
chmod 755 "$T"
mkdir -p "$T/mail" "$T/run" "$T/state"
chown nobody:nogroup "$T/mail"
PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "oracle:{PLAIN}$PASS" > "$T/passwd"
cat > "$T/dovecot.conf" <<CONF
base_dir = $T/run
state_dir = $T/state
log_path = $T/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:$T/mail/%u
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = $T/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$T/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
CONF

stop() {
    dovecot -c "$T/dovecot.conf" stop 2>/dev/null || true
    sleep 1
    rm -rf "$T"
}
trap stop EXIT INT TERM
dovecot -c "$T/dovecot.conf"
sleep 1

python3 - "$CORPUS" "$OUT" "$PORT" "$PASS" <<'PY'
import imaplib, os, re, sys
corpus, out, port, pw = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
names = sorted(n for n in os.listdir(corpus)
               if n != 'README.md' and not n.startswith('LICENSE'))
im = imaplib.IMAP4('127.0.0.1', port)
im.login('oracle', pw)
im.select('INBOX')
i = 0
for n in names:
    with open(os.path.join(corpus, n), 'rb') as f:
        data = f.read()
    if not data:  # sample_output_multipart is empty: APPEND refuses it
        print('skipped empty %s' % n)
        continue
    typ, _ = im.append('INBOX', None, None, data)
    assert typ == 'OK', (n, typ)
    i += 1
    typ, resp = im.fetch(str(i), '(ENVELOPE BODY BODYSTRUCTURE)')
    assert typ == 'OK', (n, typ, resp)
    # imaplib splits literals out: rebuild the bytes as they were sent.
    raw = b''
    for item in resp:
        if isinstance(item, tuple):
            raw += item[0] + b'\r\n' + item[1]
        else:
            raw += item
    m = re.match(rb'^%d \((.*)\)$' % i, raw, re.S)
    assert m, (n, raw[:200])
    with open(os.path.join(out, n + '.fetch'), 'wb') as f:
        f.write(m.group(1))
im.logout()
print('wrote %d files' % i)
PY
