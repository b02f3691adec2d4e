/* Private header shared by the C files of exactonline.core. Nothing here is exported:
 * the module is built with -fvisibility=hidden and only luaopen_exactonline_core is public. */
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

/* Wipe secret bytes before memory is freed (OPENSSL_cleanse). */
EO_HIDDEN void eo_wipe(void *p, size_t n);

/* Openers: each C file registers its functions into the module table on top of the stack. */
EO_HIDDEN void eo_open_error(lua_State *L);
EO_HIDDEN void eo_open_http(lua_State *L);    /* http.c:    libcurl transport            */
EO_HIDDEN void eo_open_oauth(lua_State *L);   /* oauth.c:   auth URL, code, token answers */
EO_HIDDEN void eo_open_api(lua_State *L);     /* api.c:     URLs, query, rate limits, envelopes */
EO_HIDDEN void eo_open_client(lua_State *L);  /* client.c:  the exactonline.Client userdata */
EO_HIDDEN void eo_open_webhook(lua_State *L); /* webhook.c: HMAC-SHA256 verification      */
EO_HIDDEN void eo_open_fileio(lua_State *L);  /* fileio.c:  atomic write, fsync, flock     */

#endif
