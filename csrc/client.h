/* The exactonline.Client userdata (client.c): configuration, secrets, tokens, rate-limit state and
 * the libcurl handle of one client. client.c, api.c, oauth.c, http.c and multi.c share it; each adds
 * its methods to the Client's private method table (eo_*_methods). */
#ifndef EXACTONLINE_CLIENT_H
#define EXACTONLINE_CLIENT_H
#include <curl/curl.h>
#include "eo.h"

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
    int early_refused;      /* Exact refused a refresh of this access token as too early: no more "due" */
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

/* strdup that raises on out-of-memory (the copy is freed by the caller). */
EO_HIDDEN char *eo_strdup(lua_State *L, const char *s);
/* Push v as an integer when it is one (times, counts), else as a float. */
EO_HIDDEN void eo_pushnum(lua_State *L, double v);
/* The client at idx; raises on a wrong type or a closed client. */
EO_HIDDEN eo_client *eo_checkclient(lua_State *L, int idx);
/* Replace *slot with a copy of s (or NULL), wiping the old value. */
EO_HIDDEN void eo_setsecret(lua_State *L, char **slot, const char *s);
/* Is a proactive refresh due at now? Only in the access token's last 30 s, never sooner than 570 s
 * after it was issued, and not again once Exact refused one as too early (the 401 path decides). */
EO_HIDDEN int eo_refresh_due(const eo_client *c, double now);
/* Replace the access token (or NULL): a new one may be refreshed proactively again. */
EO_HIDDEN void eo_set_access_token(lua_State *L, eo_client *c, const char *s);
/* Push the tokens held (a copy for the store; both may be absent). */
EO_HIDDEN void eo_push_tokens(lua_State *L, eo_client *c);
/* Parse url with curl_url; push "scheme://host:port" (lower case) or return 0 with a message. */
EO_HIDDEN int eo_origin(lua_State *L, const char *url, const char **why);
/* Find a header (lower-case name) in a headers table at idx; NULL when absent. The value stays
 * pushed: the pointer is good while it is there. */
EO_HIDDEN const char *eo_header(lua_State *L, int idx, const char *name);
/* Pull the rate-limit headers of an answer (headers table at idx) into c. */
EO_HIDDEN void eo_absorb_rate_limits(lua_State *L, eo_client *c, int idx);

/* The methods each concern adds to the Client's private method table. */
EO_HIDDEN extern const luaL_Reg eo_oauth_methods[]; /* oauth.c: auth URL, code, token answers */
EO_HIDDEN extern const luaL_Reg eo_api_methods[];   /* api.c:   URLs, query, rate limits, envelopes */
EO_HIDDEN extern const luaL_Reg eo_http_methods[];  /* http.c:  perform over the client's own handle */

#endif
