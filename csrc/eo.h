/* What every C file of exactonline.core shares: visibility, errors, checked numbers, wiping, the
 * openers. Nothing here is exported: the module is built with -fvisibility=hidden and only
 * luaopen_exactonline_core is public. The other private headers, one per concern:
 *   box.h     C memory owned across Lua calls that may raise (box.c)
 *   json.h    lua-cjson through the registry, never through a table users can change (json.c)
 *   client.h  the exactonline.Client userdata that client.c, api.c, oauth.c, http.c, multi.c share
 *   http.h    a client's libcurl transfer: set up, finish, free (http.c; used by client.c, multi.c)
 * Names: shared C functions are eo_*; a function Lua calls is l_<name> for core.<name> and
 * <type>_<method> for a userdata's method (client_, multi_, lock_, file_). */
#ifndef EXACTONLINE_EO_H
#define EXACTONLINE_EO_H

#include <stddef.h>
#include "compat.h"

#define EO_VERSION "0.1.0"
#define EO_EXPORT __attribute__((visibility("default")))
#define EO_HIDDEN __attribute__((visibility("hidden")))

/* Registry name of the error metatable (error.c). */
#define EO_ERROR_MT "exactonline.Error"

/* Push a new error object: a table with kind, status (0: none), code, message, reason
 * and hint (what to do next; may be NULL), carrying the exactonline.Error metatable. */
EO_HIDDEN void eo_push_error(lua_State *L, const char *kind, long status, const char *code,
                             const char *message, const char *reason, const char *hint);
/* The same, returning nil, err: `return eo_fail(L, ...)`. */
EO_HIDDEN int eo_fail(lua_State *L, const char *kind, long status, const char *code,
                      const char *message, const char *reason, const char *hint);

/* Numbers crossing into C: is v from lo to hi? NaN and the infinities never are. */
static inline int eo_within(double v, double lo, double hi) {
    return v >= lo && v <= hi;
}
#define EO_MAX_SECONDS 86400.0        /* a timeout, wait or sleep longer than a day is a mistake */
#define EO_MAX_EPOCH 1e11             /* epoch seconds past the year 5000 are a broken clock */
#define EO_MAX_WHOLE 9007199254740992.0 /* 2^53: every whole number below is exact in a double */
/* The number at idx as epoch seconds (a clock's reading); raises a clear error otherwise. */
EO_HIDDEN double eo_checktime(lua_State *L, int idx);
/* The number (or numeric string) at idx when it is a whole number from lo to hi; else dflt. */
EO_HIDDEN lua_Integer eo_optwhole(lua_State *L, int idx, double lo, double hi, lua_Integer dflt);

/* SSLKEYLOGFILE makes libcurl write every TLS session key to a file, so whoever reads it can decrypt
 * the tokens and the client secret: the client refuses to run then, unless EXACTONLINE_ALLOW_KEYLOG=1. */
EO_HIDDEN int eo_keylog_refused(void);
#define EO_KEYLOG_MESSAGE "SSLKEYLOGFILE is set: libcurl would write this process's TLS session keys to " \
    "that file, and anyone who reads it can decrypt the tokens and the client secret"
#define EO_KEYLOG_HINT "unset SSLKEYLOGFILE, or set EXACTONLINE_ALLOW_KEYLOG=1 to debug TLS on purpose"

/* Wipe secret bytes before memory is freed (OPENSSL_cleanse). */
EO_HIDDEN void eo_wipe(void *p, size_t n);

/* Openers: each C file registers its functions into the module table on top of the stack. */
EO_HIDDEN void eo_open_error(lua_State *L);   /* error.c:   error objects                */
EO_HIDDEN void eo_open_box(lua_State *L);     /* box.c:     the box metatable            */
EO_HIDDEN void eo_open_json(lua_State *L);    /* json.c:    the private lua-cjson instance */
EO_HIDDEN void eo_open_http(lua_State *L);    /* http.c:    the clock (now, sleep)       */
EO_HIDDEN void eo_open_client(lua_State *L);  /* client.c:  the exactonline.Client userdata */
EO_HIDDEN void eo_open_webhook(lua_State *L); /* webhook.c: HMAC-SHA256 verification      */
EO_HIDDEN void eo_open_digest(lua_State *L);  /* digest.c:  SHA-256, constant-time compare  */
EO_HIDDEN void eo_open_fileio(lua_State *L);  /* fileio.c:  atomic write, fsync, flock     */
EO_HIDDEN void eo_open_sys(lua_State *L);     /* sys.c:     OS calls the CLI needs (no lua-posix for 5.4) */
EO_HIDDEN void eo_open_multi(lua_State *L);   /* multi.c:   many clients' transfers at once  */

#endif
