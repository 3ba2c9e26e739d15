# correio — build, run, test, fuzz, bench.
#
#   make            build build/correio (optimised, with debug info)
#   make run        build, create ./var with one account on first run, serve in the foreground
#   make check      ASan+UBSan build, cmocka unit tests, pytest end-to-end tests
#   make fuzz       libFuzzer targets (clang), each run for FUZZ_SECONDS
#   make bench      benchmarks side by side with Postfix (bench/)
#
# Every Debian package the build or the tests need is installed when missing
# (target `deps`; needs root and apt-get, as on a fresh Debian 12 machine).

CC       ?= cc
PKGS     := libevent libevent_openssl libevent_pthreads openssl sqlite3 libunbound inih
CSTD     := -std=c17 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes
INCS     := -Isrc

DEB_PKGS := gcc make pkg-config libevent-dev libssl-dev libsqlite3-dev libcrypt-dev \
            libunbound-dev libinih-dev libcmocka-dev python3 python3-pytest swaks curl \
            openssl sqlite3 clang libclang-rt-14-dev passwd \
            libnet-ssleay-perl libio-socket-ssl-perl libio-socket-inet6-perl libauthen-sasl-perl \
            isync mutt fetchmail getmail6 dnsmasq-base
DEPS_STAMP := build/.deps-ok

LIB_SRC  := $(sort $(shell find src -name '*.c' ! -path src/main.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
HDRS     := $(shell find src -name '*.h')

# The three build flavours: release (build/), sanitizers (build/asan/), fuzz (build/fuzz/).
REL_DIR  := build/rel
ASAN_DIR := build/asan
FUZZ_DIR := build/fuzz

REL_CFLAGS  := $(CSTD) $(WARN) -O2 -g $(INCS)
ASAN_CFLAGS := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined $(INCS)
FUZZ_CFLAGS := $(CSTD) -O1 -g -fsanitize=fuzzer-no-link,address,undefined $(INCS) -DCORREIO_FUZZ

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lpthread

.PHONY: all deps run check unit e2e fuzz bench bench-smtp bench-imap bench-pop3 bench-relay clean layering install install-sendmail

all: build/correio

# --- Debian packages ---------------------------------------------------------
deps: $(DEPS_STAMP)
$(DEPS_STAMP): Makefile
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    if [ "$$(id -u)" != 0 ]; then echo "run as root (or install:$$missing)"; exit 1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p build && touch $@

# --- objects -------------------------------------------------------------------
REL_OBJ  := $(LIB_SRC:%.c=$(REL_DIR)/%.o)
ASAN_OBJ := $(LIB_SRC:%.c=$(ASAN_DIR)/%.o)
FUZZ_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/%.o)

$(REL_DIR)/%.o: %.c $(HDRS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(REL_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(ASAN_DIR)/%.o: %.c $(HDRS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(ASAN_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(FUZZ_DIR)/%.o: %.c $(HDRS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC fuzz $<"
	@clang $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(REL_DIR)/libcorreio.a: $(REL_OBJ)
	rm -f $@ && ar rcs $@ $^
$(ASAN_DIR)/libcorreio.a: $(ASAN_OBJ)
	rm -f $@ && ar rcs $@ $^
$(FUZZ_DIR)/libcorreio.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^

build/correio: $(REL_DIR)/src/main.o $(REL_DIR)/libcorreio.a
	$(CC) $(REL_CFLAGS) -o $@ $^ $(PKG_LIBS)

$(ASAN_DIR)/correio: $(ASAN_DIR)/src/main.o $(ASAN_DIR)/libcorreio.a
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(PKG_LIBS)

# --- unit tests (cmocka) ---------------------------------------------------------
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(ASAN_DIR)/tests/%)
$(ASAN_DIR)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(ASAN_DIR)/libcorreio.a
	@mkdir -p $(dir $@)
	@echo "  TEST    $<"
	@$(CC) $(ASAN_CFLAGS) $(PKG_CFLAGS) -Itests/unit -o $@ $< $(ASAN_DIR)/libcorreio.a $(PKG_LIBS) -lcmocka

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# --- end-to-end tests (pytest, real server, real clients) ------------------------------
E2E_ARGS ?=
e2e: $(ASAN_DIR)/correio
	cd tests/e2e && CORREIO_BIN=$(CURDIR)/$(ASAN_DIR)/correio \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    /usr/bin/python3 -m pytest -q -p no:cacheprovider $(E2E_ARGS)

check: layering
	$(MAKE) unit
	$(MAKE) e2e

# lib, mime, proto, queue and store stay pure: no libevent, no OpenSSL, no sockets.
layering:
	@bad=$$(grep -rlE '#include *<(event2/|openssl/|sys/socket\.h|netinet/|arpa/inet\.h)' \
	    src/lib src/mime src/proto src/queue src/store 2>/dev/null); \
	if [ -n "$$bad" ]; then echo "layering violation: $$bad"; exit 1; fi; echo "layering ok"

# --- fuzzing (libFuzzer) ------------------------------------------------------------
FUZZ_SECONDS ?= 30
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_DIR)/%)
$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_DIR)/libcorreio.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $(PKG_CFLAGS) -o $@ $< $(FUZZ_DIR)/libcorreio.a $(PKG_LIBS)

fuzz: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do \
	    n=$$(basename $$f); mkdir -p fuzz/corpus-$$n; \
	    echo "== $$n for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 fuzz/corpus-$$n fuzz/seeds/$$n 2>&1 | tail -3; \
	done

# --- run -----------------------------------------------------------------------------
run: build/correio
	@if [ ! -d var ]; then \
	    ./build/correio init ./var --domain localhost --port-offset 10000 \
	        --set smtp.postmaster=user@localhost && \
	    pw=$$(head -c 12 /dev/urandom | base64 | tr -d '/+=' ) && \
	    printf '%s\n' "$$pw" | ./build/correio -c var/correio.conf user add user@localhost --password-stdin && \
	    echo "account: user@localhost  password: $$pw  (shown once)"; \
	fi
	./build/correio -c var/correio.conf serve

# --- benchmarks ---------------------------------------------------------------------
bench: bench-smtp bench-imap bench-pop3 bench-relay
bench-smtp: build/correio
	bash bench/smtp.sh
bench-imap: build/correio
	bash bench/imap.sh
bench-pop3: build/correio
	bash bench/pop3.sh
bench-relay: build/correio
	bash bench/relay.sh

install: build/correio
	install -D -m 0755 build/correio $(DESTDIR)/usr/local/sbin/correio

# /usr/sbin/sendmail as a link to correio (replaces another MTA's sendmail).
install-sendmail: install
	install -d $(DESTDIR)/usr/sbin
	ln -sf /usr/local/sbin/correio $(DESTDIR)/usr/sbin/sendmail

clean:
	rm -rf build
