# Hardening (issue 7): static analysis, sanitizers, valgrind, fuzzing. Included from the Makefile.
#
#   make analyze     cppcheck + clang-tidy (.clang-tidy) on csrc/, warnings are errors
#   make asan        core built with ASan+UBSan into build/asan/lua5.4, Lua 5.4 specs under it, twice:
#                    once normally, once with an aggressive GC (spec/support/gc_stress.lua)
#   make memcheck    Lua 5.4 specs under valgrind memcheck (spec/valgrind.supp)
#   make fuzz        libFuzzer targets in spec/fuzz/, FUZZ_SECONDS each (default 60)
#
# Each installs what it needs first (HARDENING_PACKAGES, through .ci/deps.sh), like `make test`.

HARDENING_PACKAGES = cppcheck clang-tidy clang libclang-rt-14-dev valgrind
CLANG       ?= clang
FUZZ_SECONDS ?= 60
# extra libFuzzer flags; CI passes a fixed -seed and -runs so its run is the same every time
FUZZ_ARGS ?=
FUZZ_TARGETS = code_from token_answer rate_limits api_answer request_url webhook

HARDEN_LUA_CFLAGS = $(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
HARDEN_DEP_CFLAGS = $(shell $(PKG_CONFIG) --cflags libcurl libcrypto 2>/dev/null)
HARDEN_DEP_LIBS   = $(shell $(PKG_CONFIG) --libs libcurl libcrypto 2>/dev/null || echo -lcurl -lcrypto)
HARDEN_LUA_LIBS   = $(shell $(PKG_CONFIG) --libs lua5.4 2>/dev/null || echo -llua5.4)

# The Lua 5.4 spec run, as spec/run.sh does it but one VM and busted's own exit status.
# Children the specs spawn (CLI, shared-chain workers) use build/lua5.4 through EXACTONLINE_VM.
HARDEN_LPATH = $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
HARDEN_SPECS = EXACTONLINE_VM=lua5.4 LUA_PATH='$(HARDEN_LPATH)'
BUSTED_OUT  ?= -o utfTerminal
# extra busted arguments (a spec file, --filter), as BUSTED_ARGS for spec/run.sh
HARDEN_BUSTED_ARGS ?= $(BUSTED_ARGS)

.PHONY: hardening-deps analyze asan asan-run memcheck memcheck-run fuzz fuzz-run fuzz-build

hardening-deps:
	@sh .ci/deps.sh $(HARDENING_PACKAGES)

# ---- static analysis ----
# mk/lua_noreturn.h tells both analysers that luaL_error & co. do not return.
analyze: hardening-deps
	cppcheck --enable=warning,performance,portability --std=c99 --inline-suppr --error-exitcode=1 -q \
	  $(HARDEN_LUA_CFLAGS) --include=mk/lua_noreturn.h \
	  --suppress=missingIncludeSystem --suppress=toomanyconfigs csrc/
	clang-tidy --quiet $(SRCS) -- -std=gnu99 $(HARDEN_LUA_CFLAGS) $(HARDEN_DEP_CFLAGS) -include mk/lua_noreturn.h
	@echo "analyze: cppcheck and clang-tidy clean on csrc/"

# ---- ASan + UBSan ----
# lua5.4 is not instrumented: the ASan runtime is preloaded into the busted process only;
# mk/asan_preload.c (preloaded after it) drops LD_PRELOAD at start-up so spawned children
# (nginx, curl, sh, lua5.4 running the CLI) do not inherit it.
ASAN_RT    = $(shell $(CLANG) -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null)
ASAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g
ASAN_ENV   = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1 \
             LSAN_OPTIONS=suppressions=$(CURDIR)/mk/lsan.supp:print_suppressions=0 \
             UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

build/asan/lua5.4/exactonline/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CLANG) $(HARDEN_LUA_CFLAGS) -std=gnu99 -fPIC -fvisibility=hidden $(WARNFLAGS) $(HARDEN_DEP_CFLAGS) \
	  $(ASAN_FLAGS) -shared-libasan -shared -o $@ $(SRCS) $(HARDEN_DEP_LIBS)

build/asan/preload.so: mk/asan_preload.c
	@mkdir -p $(@D)
	$(CC) -O2 -fPIC -shared -o $@ $<

asan: hardening-deps
	@$(MAKE) --no-print-directory asan-run

ASAN_RUN = $(HARDEN_SPECS) LUA_CPATH='$(CURDIR)/build/lua5.4/?.so;;' LUA_CPATH_5_4='$(CURDIR)/build/lua5.4/?.so;;' \
  EXACTONLINE_ASAN_CPATH='$(CURDIR)/build/asan/lua5.4/?.so' $(ASAN_ENV) \
  LD_PRELOAD='$(ASAN_RT) $(CURDIR)/build/asan/preload.so'

asan-run: lua54 build/asan/lua5.4/exactonline/core.so build/asan/preload.so
	@echo "== Lua 5.4 specs, core under ASan+UBSan"
	$(ASAN_RUN) lua5.4 /usr/bin/busted $(BUSTED_OUT) --helper=mk/asan_helper.lua $(HARDEN_BUSTED_ARGS)
	@echo "== Lua 5.4 specs, core under ASan+UBSan, aggressive GC"
	$(ASAN_RUN) EXACTONLINE_ASAN_GC=1 lua5.4 /usr/bin/busted $(BUSTED_OUT) --helper=mk/asan_helper.lua $(HARDEN_BUSTED_ARGS)
	@echo "asan: clean"

# ---- valgrind memcheck ----
# The whole Lua 5.4 suite (about 4 minutes here). Only the busted process runs under valgrind: the
# children the process-heavy specs start (CLI runs, kill -9 loops, nginx) are not traced.
MEMCHECK_SPECS ?= $(sort $(wildcard spec/*_spec.lua))
VALGRIND = valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
           --show-leak-kinds=definite --keep-debuginfo=yes --suppressions=$(CURDIR)/spec/valgrind.supp --num-callers=30

memcheck: hardening-deps
	@$(MAKE) --no-print-directory memcheck-run

# mk/asan_preload.c here too: dlclose kept a no-op so leak stacks name their module.
memcheck-run: lua54 build/asan/preload.so
	@echo "== Lua 5.4 specs under valgrind memcheck"
	$(HARDEN_SPECS) LUA_CPATH='$(CURDIR)/build/lua5.4/?.so;;' LUA_CPATH_5_4='$(CURDIR)/build/lua5.4/?.so;;' \
	  LD_PRELOAD='$(CURDIR)/build/asan/preload.so' \
	  EXACTONLINE_MEMCHECK=1 $(VALGRIND) lua5.4 /usr/bin/busted $(BUSTED_OUT) $(HARDEN_BUSTED_ARGS) $(MEMCHECK_SPECS)
	@echo "memcheck: 0 errors, 0 definitely lost"

# ---- libFuzzer ----
FUZZ_FLAGS = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g
FUZZ_BINS  = $(patsubst %,build/fuzz/%,$(FUZZ_TARGETS))

build/fuzz/%: spec/fuzz/%.lua spec/fuzz/driver.c spec/fuzz/common.lua $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CLANG) $(HARDEN_LUA_CFLAGS) -std=gnu99 $(HARDEN_DEP_CFLAGS) $(FUZZ_FLAGS) -Icsrc \
	  -DEO_FUZZ_DIR='"$(CURDIR)/spec/fuzz"' -DEO_FUZZ_SCRIPT='"$(CURDIR)/spec/fuzz/$*.lua"' \
	  -o $@ spec/fuzz/driver.c $(SRCS) $(HARDEN_LUA_LIBS) $(HARDEN_DEP_LIBS) -ldl

fuzz-build: $(FUZZ_BINS)

fuzz: hardening-deps
	@$(MAKE) --no-print-directory fuzz-run

# Each target: its committed corpus (read only) plus a scratch corpus in build/fuzz/; crashes
# land in build/fuzz/artifacts/. -error_exitcode/-timeout_exitcode make any finding fail make.
fuzz-run: fuzz-build
	@mkdir -p build/fuzz/artifacts
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  mkdir -p build/fuzz/corpus/$$t; \
	  ASAN_OPTIONS=detect_leaks=1 build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 $(FUZZ_ARGS) \
	    -max_len=8192 -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/$$t- \
	    -dict=spec/fuzz/$$t.dict build/fuzz/corpus/$$t spec/fuzz/corpus/$$t 2>build/fuzz/$$t.log \
	    || { tail -n 60 build/fuzz/$$t.log; echo "fuzz: $$t found a problem (build/fuzz/artifacts/)"; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done' build/fuzz/$$t.log | tr '\n' ' '; echo; \
	done
	@echo "fuzz: 0 crashes, 0 leaks, 0 timeouts"
