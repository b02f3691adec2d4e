# exactonline: build the C core for Lua 5.4, OpenResty's LuaJIT, Lua 5.3 and 5.1, run the specs, the demo.
#
#   make            build/lua5.4/exactonline/core.so
#   make luajit     build/luajit/exactonline/core.so
#   make lua53      build/lua5.3/exactonline/core.so
#   make lua51      build/lua5.1/exactonline/core.so
#   make test       install missing Debian packages, build all four, run the specs under each VM
#   make demo       install missing Debian packages, build, run the CLI against the sandbox
#   make lint       luacheck
#   make install    install the module, Lua files and CLI under $(DESTDIR)$(PREFIX)

CC        ?= cc
CFLAGS    ?= -O2 -g
WARNFLAGS ?= -Wall -Wextra -Werror
LIBFLAG   ?= -shared
PREFIX    ?= /usr/local
DESTDIR   ?=
PKG_CONFIG ?= pkg-config

# Lua headers: LUA_INCDIR / LUAJIT_INCDIR / LUA53_INCDIR / LUA51_INCDIR override pkg-config.
LUA_INCDIR    ?=
LUAJIT_INCDIR ?=
LUA53_INCDIR  ?=
LUA51_INCDIR  ?=
lua_cflags = $(if $(1),-I$(1),$(shell $(PKG_CONFIG) --cflags $(2) 2>/dev/null || echo -I/usr/include/$(3)))
VM_CFLAGS_lua5.4 = $(call lua_cflags,$(LUA_INCDIR),lua5.4,lua5.4)
VM_CFLAGS_luajit = $(call lua_cflags,$(LUAJIT_INCDIR),luajit,luajit-2.1)
VM_CFLAGS_lua5.3 = $(call lua_cflags,$(LUA53_INCDIR),lua5.3,lua5.3)
VM_CFLAGS_lua5.1 = $(call lua_cflags,$(LUA51_INCDIR),lua5.1,lua5.1)
# the VMs make test runs the suite under (spec/run.sh), each with its own build/VM/exactonline/core.so
VMS = lua5.4 luajit lua5.3 lua5.1
VM_CORES = $(patsubst %,build/%/exactonline/core.so,$(VMS))
DEP_CFLAGS = $(shell $(PKG_CONFIG) --cflags libcurl libcrypto 2>/dev/null)
DEP_LIBS   = $(shell $(PKG_CONFIG) --libs libcurl libcrypto 2>/dev/null || echo -lcurl -lcrypto)

MOD_CFLAGS = -std=gnu99 -fPIC -fvisibility=hidden $(WARNFLAGS) $(DEP_CFLAGS) $(CFLAGS)

SRCS := $(sort $(wildcard csrc/*.c))
HDRS := $(wildcard csrc/*.h)

LUA_SHARE  = $(DESTDIR)$(PREFIX)/share/lua/5.4
LUA_LIB    = $(DESTDIR)$(PREFIX)/lib/lua/5.4
BIN_DIR    = $(DESTDIR)$(PREFIX)/bin

# Debian packages the build, the specs and the demo need.
# lua-cjson, lua-socket, lua-sec, lua-dbi-* and busted's modules are built for 5.1-5.4 in the same packages.
DEB_PACKAGES = lua5.4 liblua5.4-dev lua5.3 liblua5.3-dev lua5.1 liblua5.1-0-dev libcurl4-openssl-dev libssl-dev lua-cjson lua-busted lua-check \
               luarocks lua-socket lua-sec libluajit2-5.1-dev luajit2 nginx libnginx-mod-http-lua \
               postgresql openssl python3 gcc make pkg-config util-linux \
               curl binutils procps git valgrind lua-dbi-sqlite3 lua-dbi-postgresql sqlite3 \
               lua-argparse

.PHONY: all lua54 luajit lua53 lua51 test test-run demo demo-run deps lint install clean bench bench-gateway memcheck asan

all: lua54

lua54: build/lua5.4/exactonline/core.so
luajit: build/luajit/exactonline/core.so
lua53: build/lua5.3/exactonline/core.so
lua51: build/lua5.1/exactonline/core.so

# Built beside and renamed into place: a process loading core.so never sees a half-written file.
$(VM_CORES): build/%/exactonline/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(VM_CFLAGS_$*) $(MOD_CFLAGS) $(LIBFLAG) -o $@.tmp $(SRCS) $(DEP_LIBS) $(LDFLAGS)
	@mv -f $@.tmp $@

# deps runs first in its own make, so pkg-config answers after the packages are there.
deps:
	@sh .ci/deps.sh $(DEB_PACKAGES)

test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory test-run

test-run: $(VM_CORES)
	@sh spec/run.sh

demo:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory demo-run

demo-run: lua54
	@lua5.4 bin/exactonline demo

lint:
	luacheck lua spec bench bin/exactonline rockspec/gen.lua

bench:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory lua54 luajit
	@lua5.4 bench/run.lua
	@lua5.4 bench/replicate.lua
	@lua5.4 bench/gateway.lua

# what exactonline gateway adds to a call, and its requests/s, against direct calls (also part of make bench)
bench-gateway:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory lua54 luajit
	@lua5.4 bench/gateway.lua

install: lua54
	install -d $(LUA_SHARE)/exactonline $(LUA_LIB)/exactonline $(BIN_DIR)
	cd lua && find exactonline -type d -exec install -d $(LUA_SHARE)/{} \;
	cd lua && find exactonline -type f -name '*.lua' -exec install -m 644 {} $(LUA_SHARE)/{} \;
	install -m 755 build/lua5.4/exactonline/core.so $(LUA_LIB)/exactonline/core.so
	install -m 755 bin/exactonline $(BIN_DIR)/exactonline

clean:
	rm -rf build

# hardening targets (analyze, asan, memcheck, fuzz) and any other make fragments
-include mk/*.mk
