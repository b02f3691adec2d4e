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

/* A box (box.c): a userdata owning C memory across Lua calls that may raise; its __gc releases it.
 * eo_box_new pushes an empty box; eo_box_hold releases what it held, then holds p. */
typedef void (*eo_release)(void *);
typedef struct eo_box {
    void *p;
    eo_release release;
} eo_box;
EO_HIDDEN eo_box *eo_box_new(lua_State *L);
EO_HIDDEN void *eo_box_hold(eo_box *b, void *p, eo_release release);
EO_HIDDEN void eo_box_release(eo_box *b);
EO_HIDDEN void eo_curl_free(void *p);       /* curl_free */
EO_HIDDEN void eo_curl_free_wiped(void *p); /* wipe a NUL-terminated string, then curl_free */

/* Openers: each C file registers its functions into the module table on top of the stack. */
EO_HIDDEN void eo_open_error(lua_State *L);
EO_HIDDEN void eo_open_box(lua_State *L);
EO_HIDDEN void eo_open_http(lua_State *L);    /* http.c:    libcurl transport            */
EO_HIDDEN void eo_open_oauth(lua_State *L);   /* oauth.c:   auth URL, code, token answers */
EO_HIDDEN void eo_open_api(lua_State *L);     /* api.c:     URLs, query, rate limits, envelopes */
EO_HIDDEN void eo_open_client(lua_State *L);  /* client.c:  the exactonline.Client userdata */
EO_HIDDEN void eo_open_webhook(lua_State *L); /* webhook.c: HMAC-SHA256 verification      */
EO_HIDDEN void eo_open_digest(lua_State *L);  /* digest.c:  SHA-256, constant-time compare  */
EO_HIDDEN void eo_open_fileio(lua_State *L);  /* fileio.c:  atomic write, fsync, flock     */
EO_HIDDEN void eo_open_sys(lua_State *L);     /* sys.c:     OS calls the CLI needs (no lua-posix for 5.4) */
EO_HIDDEN void eo_open_multi(lua_State *L);   /* multi.c:   many clients' transfers at once  */

#endif

/* ---- The exactonline.Client userdata (client.c), shared with oauth.c, api.c, http.c ---- */
#ifndef EXACTONLINE_CLIENT_H
#define EXACTONLINE_CLIENT_H
#include <curl/curl.h>

#define EO_CLIENT_MT "exactonline.Client"
#define EO_ACCESS_LIFETIME 600.0       /* seconds an access token lives */
#define EO_REFRESH_LIFETIME 2592000.0  /* 30 days for a refresh token */
#define EO_REFRESH_MIN_AGE 570.0       /* Exact refuses a refresh sooner than this */
#define EO_REFRESH_WINDOW 30.0         /* proactive refresh only in the last 30 s */
#define EO_MAX_PAGES 100000            /* default config.max_pages: 100 million rows of 1000-row pages */

typedef struct eo_buf {
    char *data;
    size_t len, cap;
} eo_buf;

typedef struct eo_client {
    int closed;
    char *base_url;      /* "https://host[:port]" plus optional path prefix, no trailing slash */
    char *origin;        /* "https://host:port", lower case, for same-origin checks */
    char *client_id;
    char *client_secret; /* wiped on free */
    char *redirect_uri;
    lua_Integer division; /* 0: not known yet */
    double timeout, max_wait;
    int wait_on_rate_limit;
    char *cafile, *capath;
    size_t max_response;
    lua_Integer max_pages; /* a listing (__next, TSPaging) stops with an error past this many pages */
    /* tokens (wiped on free) */
    char *access_token, *refresh_token;
    double expires_at, obtained_at, refresh_obtained_at;
    int last_grant_refresh; /* the last token_request was a refresh */
    /* rate limits, -1 when unknown; resets in epoch seconds */
    double rl_min_limit, rl_min_remaining, rl_min_reset;
    double rl_day_limit, rl_day_remaining, rl_day_reset;
    int rl_last_min, rl_last_day; /* families present on the last answer */
    /* libcurl: one easy handle, reused; buffers owned here */
    CURL *curl;
    struct curl_slist *req_headers;
    eo_buf resp_body, resp_headers;
    int too_large;
    char errbuf[CURL_ERROR_SIZE];
    /* multi.c: the multi handle this client's transfer runs in (NULL: none) and how it ended */
    struct eo_multi *multi;
    int multi_done;
    CURLcode multi_rc;
} eo_client;

/* The client at idx; raises on a wrong type or a closed client. */
EO_HIDDEN eo_client *eo_checkclient(lua_State *L, int idx);
/* strdup that raises on out-of-memory (the copy is freed by the caller). */
EO_HIDDEN char *eo_strdup(lua_State *L, const char *s);
/* Replace *slot with a copy of s (or NULL), wiping the old value. */
EO_HIDDEN void eo_setsecret(lua_State *L, char **slot, const char *s);
/* Push the tokens held (a copy for the store; both may be absent). */
EO_HIDDEN void eo_push_tokens(lua_State *L, eo_client *c);
/* Parse url with curl_url; push "scheme://host:port" (lower case) or return 0 with a message. */
EO_HIDDEN int eo_origin(lua_State *L, const char *url, const char **why);
/* lua-cjson through the Lua API: decode the string at idx; pushes the value, or returns 0 and
 * pushes the message. encode the value at idx; pushes the string or returns 0 and a message. */
EO_HIDDEN int eo_json_decode(lua_State *L, int idx);
EO_HIDDEN int eo_json_encode(lua_State *L, int idx);
/* Find a header (lower-case name) in a headers table at idx; NULL when absent. */
EO_HIDDEN const char *eo_header(lua_State *L, int idx, const char *name);
/* Pull the rate-limit headers of an answer (headers table at idx) into c. */
EO_HIDDEN void eo_absorb_rate_limits(lua_State *L, eo_client *c, int idx);

/* Method tables each concern contributes to exactonline.Client. */
EO_HIDDEN extern const luaL_Reg eo_oauth_methods[];
EO_HIDDEN extern const luaL_Reg eo_api_methods[];
EO_HIDDEN extern const luaL_Reg eo_http_methods[];
/* Push v as an integer when it is one (times, counts), else as a float. */
EO_HIDDEN void eo_pushnum(lua_State *L, double v);
/* http.c: free what the libcurl side holds (on close). */
EO_HIDDEN void eo_http_free(eo_client *c);
/* http.c: set up c's easy handle for the request table at idx (copy_body: libcurl copies the body);
 * 1, or 0 with nil, err pushed. Then, when the transfer ended with rc, push the answer or nil, err. */
EO_HIDDEN int eo_http_prepare(lua_State *L, eo_client *c, int idx, int copy_body);
EO_HIDDEN int eo_http_finish(lua_State *L, eo_client *c, CURLcode rc);
/* multi.c: take c's running transfer out of its multi handle (c is being closed). */
EO_HIDDEN void eo_multi_detach(eo_client *c);
#endif
