/* The REST side: path -> URL (the bearer token never leaves the base URL's origin),
 * query encoding, answers and OData error envelopes, rate limits. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "box.h"
#include "client.h"
#include "json.h"

const char *eo_header(lua_State *L, int idx, const char *name) {
    const char *s = NULL;
    if (eo_getfield(L, idx, name) == LUA_TSTRING) s = lua_tostring(L, -1);
    return s; /* the value stays pushed: the pointer is good while it is there */
}

int eo_origin(lua_State *L, const char *url, const char **why) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *p, origin[400];
    CURLUcode rc;
    int n = -1;
    if (!u) return luaL_error(L, "exactonline: out of memory");
    rc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (rc == CURLUE_OK) rc = curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    curl_url_cleanup(u);
    if (rc == CURLUE_OK) {
        for (p = host; *p; p++) *p = (char)tolower((unsigned char)*p);
        for (p = scheme; *p; p++) *p = (char)tolower((unsigned char)*p);
        n = snprintf(origin, sizeof origin, "%s://%s:%s", scheme, host, port);
    } else {
        *why = curl_url_strerror(rc);
    }
    /* libcurl's strings are freed before any Lua call that could raise */
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    if (rc != CURLUE_OK) return 0;
    if (n < 0 || (size_t)n >= sizeof origin) {
        *why = "the host name is too long";
        return 0;
    }
    lua_pushstring(L, origin);
    return 1;
}

/* ---- rate limits ---- */

static double epoch_seconds(double v) {
    return v > 1e12 ? v / 1000.0 : v; /* observed in ms; one SDK says s */
}

static int header_num(lua_State *L, int idx, const char *name, double *out) {
    const char *s = eo_header(L, idx, name);
    char *end;
    double v = 0;
    int ok = 0;
    if (s) {
        v = strtod(s, &end);
        ok = end != s && eo_within(v, 0, 1e15); /* "nan", "1e999", "-5": not a limit or a time */
    }
    lua_pop(L, 1);
    if (ok) *out = v;
    return ok;
}

void eo_absorb_rate_limits(lua_State *L, eo_client *c, int idx) {
    double v;
    idx = eo_absindex(L, idx);
    c->rl_last_min = c->rl_last_day = 0;
    if (!lua_istable(L, idx)) return;
    if (header_num(L, idx, "x-ratelimit-minutely-limit", &v)) c->rl_min_limit = v, c->rl_last_min = 1;
    if (header_num(L, idx, "x-ratelimit-minutely-remaining", &v)) c->rl_min_remaining = v, c->rl_last_min = 1;
    if (header_num(L, idx, "x-ratelimit-minutely-reset", &v))
        c->rl_min_reset = epoch_seconds(v), c->rl_last_min = 1;
    if (header_num(L, idx, "x-ratelimit-limit", &v)) c->rl_day_limit = v, c->rl_last_day = 1;
    if (header_num(L, idx, "x-ratelimit-remaining", &v)) c->rl_day_remaining = v, c->rl_last_day = 1;
    if (header_num(L, idx, "x-ratelimit-reset", &v)) c->rl_day_reset = epoch_seconds(v), c->rl_last_day = 1;
}

static void rl_field(lua_State *L, const char *k, double v) {
    if (v >= 0) {
        eo_pushnum(L, v);
        lua_setfield(L, -2, k);
    }
}

/* rate_limits() -> {minutely_limit, minutely_remaining, minutely_reset, daily_…} (known ones) */
static int client_rate_limits(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    lua_createtable(L, 0, 6);
    rl_field(L, "minutely_limit", c->rl_min_limit);
    rl_field(L, "minutely_remaining", c->rl_min_remaining);
    rl_field(L, "minutely_reset", c->rl_min_reset);
    rl_field(L, "daily_limit", c->rl_day_limit);
    rl_field(L, "daily_remaining", c->rl_day_remaining);
    rl_field(L, "daily_reset", c->rl_day_reset);
    return 1;
}

/* The rate-limit decision before a call (after_429 = 0) or after a 429: pushes the seconds to wait
 * (0: go) and returns 1, or pushes nil, a rate_limit error and returns 2. */
static int rate_decide(lua_State *L, eo_client *c, double now, int after_429) {
    double wait = 0;
    const char *msg;
    if (c->rl_day_remaining == 0 && (c->rl_day_reset > now || (after_429 && c->rl_last_day))) {
        eo_push_error(L, "rate_limit", after_429 ? 429 : 0, "daily_limit",
                      "the daily limit of API calls for this app and division is spent", NULL,
                      "wait for the daily reset (00:00 UTC, see client:rate_limits().daily_reset) or ask Exact "
                      "for a higher limit");
        lua_pushnumber(L, c->rl_day_reset);
        lua_setfield(L, -2, "reset");
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (after_429) {
        if (c->rl_last_min && c->rl_min_reset > 0) wait = c->rl_min_reset - now;
        else wait = 60.0 - fmod(now, 60.0); /* no headers on the 429: the next minute boundary */
        if (wait < 0) wait = 0;
        msg = "Exact answered 429 Too Many Requests: the minutely limit is spent";
    } else if (c->rl_min_remaining == 0 && c->rl_min_reset > now) {
        wait = c->rl_min_reset - now;
        msg = "the minutely limit of API calls is spent";
    } else {
        lua_pushnumber(L, 0);
        return 1;
    }
    wait += 0.1; /* land just past the reset, not on it */
    if (!c->wait_on_rate_limit || wait > c->max_wait) {
        lua_pushfstring(L, "%s; it resets in %d s", msg, wait < 1e9 ? (int)ceil(wait) : 999999999);
        eo_push_error(L, "rate_limit", after_429 ? 429 : 0, "minutely_limit", lua_tostring(L, -1), NULL,
                      c->wait_on_rate_limit ? "the wait would be longer than max_wait: raise max_wait or retry "
                                              "after the reset"
                                            : "retry after the reset, or set on_rate_limit = \"wait\"");
        lua_pushnumber(L, wait);
        lua_setfield(L, -2, "retry_after");
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushnumber(L, wait);
    return 1;
}

/* rate_wait(now, after_429) -> seconds to wait (0: go) | nil, rate_limit error */
static int client_rate_wait(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    return rate_decide(L, c, eo_checktime(L, 2), lua_toboolean(L, 3));
}

/* ---- requests ---- */

static int bad_header_text(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 1;
    return 0;
}

/* Push s percent-encoded once; the box owns libcurl's copy while Lua copies it. */
static void push_escaped(lua_State *L, eo_box *box, const char *s, size_t len) {
    char *e = curl_easy_escape(NULL, s, (int)len);
    if (!e) luaL_error(L, "exactonline: out of memory");
    eo_box_hold(box, e, eo_curl_free);
    lua_pushstring(L, e);
    eo_box_release(box);
}

typedef struct {
    const char *name; /* a key string kept on the Lua stack at slot */
    int slot;
} query_key;

static int cmpkey(const void *a, const void *b) {
    return strcmp(((const query_key *)a)->name, ((const query_key *)b)->name);
}

#define MAX_QUERY 64

/* Push the query table at idx as "?a=1&b=2" (or "&a=1…" after an existing query): names sorted,
 * each name and value percent-encoded exactly once. Each name stays on the stack while it is used. */
static void push_query(lua_State *L, int idx, int has_query) {
    query_key keys[MAX_QUERY];
    eo_box *box;
    int n = 0, i, base;
    idx = eo_absindex(L, idx);
    luaL_checkstack(L, MAX_QUERY + 8, "too many query parameters");
    box = eo_box_new(L);
    base = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "exactonline: query names must be strings");
        if (n == MAX_QUERY) luaL_error(L, "exactonline: too many query parameters");
        lua_pushvalue(L, -1); /* one copy stays at base + n + 1, one goes on with lua_next */
        lua_insert(L, -2);
        keys[n].slot = base + n + 1;
        keys[n].name = lua_tostring(L, keys[n].slot);
        n++;
    }
    qsort(keys, (size_t)n, sizeof keys[0], cmpkey);
    lua_pushliteral(L, "");
    for (i = 0; i < n; i++) {
        size_t len, klen;
        const char *v, *k = lua_tolstring(L, keys[i].slot, &klen);
        int t;
        lua_pushvalue(L, keys[i].slot);
        lua_rawget(L, idx);
        t = lua_type(L, -1);
        if (t == LUA_TBOOLEAN) {
            lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
            lua_remove(L, -2);
        } else if (t != LUA_TSTRING && t != LUA_TNUMBER) {
            luaL_error(L, "exactonline: query value for '%s' must be a string, number or boolean", k);
        } else if (t == LUA_TNUMBER) {
            lua_pushstring(L, lua_tostring(L, -1));
            lua_remove(L, -2);
        }
        v = lua_tolstring(L, -1, &len);
        lua_pushstring(L, (i == 0 && !has_query) ? "?" : "&");
        push_escaped(L, box, k, klen);
        lua_pushliteral(L, "=");
        push_escaped(L, box, v, len);
        lua_remove(L, -5); /* the raw value */
        lua_concat(L, 5);  /* so far .. sep .. name .. "=" .. value */
    }
    lua_replace(L, base); /* the result takes the box's slot; the names go */
    lua_settop(L, base);
}

static int is_absolute(const char *p) {
    return strncmp(p, "https://", 8) == 0 || strncmp(p, "http://", 7) == 0 || strncmp(p, "HTTPS://", 8) == 0 ||
           strncmp(p, "HTTP://", 7) == 0;
}

/* An absolute URL on our origin goes out as the base URL's own scheme://host[:port] plus its path and
 * query, so what reaches the wire never spells the origin differently (case, empty or default port). */
static int rebase(lua_State *L, eo_client *c, int url) {
    CURLU *u;
    char *upath = NULL, *uquery = NULL;
    const char *b = c->base_url, *auth = strstr(b, "://"), *slash = auth ? strchr(auth + 3, '/') : NULL;
    eo_box *path_box = eo_box_new(L), *query_box = eo_box_new(L);
    int ok;
    if (!(u = curl_url())) return luaL_error(L, "exactonline: out of memory");
    ok = curl_url_set(u, CURLUPART_URL, lua_tostring(L, url), 0) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_PATH, &upath, 0) == CURLUE_OK;
    if (ok && curl_url_get(u, CURLUPART_QUERY, &uquery, 0) != CURLUE_OK) uquery = NULL;
    curl_url_cleanup(u);
    eo_box_hold(path_box, upath, eo_curl_free); /* owned before the pushes below may raise */
    eo_box_hold(query_box, uquery, eo_curl_free);
    if (ok) {
        lua_pushlstring(L, b, slash ? (size_t)(slash - b) : strlen(b));
        lua_pushstring(L, upath);
        if (uquery) lua_pushfstring(L, "?%s", uquery);
        else lua_pushliteral(L, "");
        lua_concat(L, 3);
        lua_replace(L, url);
    }
    eo_box_release(path_box);
    eo_box_release(query_box);
    lua_pop(L, 2);
    return ok;
}

/* Why prepare cannot build the request yet: the Lua client acts on it, then asks again. */
static int not_yet(lua_State *L, const char *why) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    return 2;
}

/* prepare(method, path, {query=, body=, headers=}, now, skip_due) -> one request attempt, decided here:
 *   req, wait            {method, url, headers, body, timeout}; sleep wait seconds (0: none), then send it
 *   false, "tokens"      no access token held: load the store (or refresh a lone refresh token)
 *   false, "refresh"     the access token is in its last 30 s (unless skip_due): refresh first
 *   false, "division"    a relative path and no division known: ask /current/Me first
 *   nil, err             refused: a bad path or header, a foreign origin, a spent rate limit */
static int client_prepare(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    size_t path_len;
    const char *method = luaL_checkstring(L, 2), *path = luaL_checklstring(L, 3, &path_len), *m, *why = NULL;
    double now = eo_checktime(L, 5);
    int skip_due = lua_toboolean(L, 6), opts, q, hdrs, body, wait, has_query, url, out;
    char division[32];
    for (m = method; *m; m++)
        if (*m < 'A' || *m > 'Z') luaL_argerror(L, 2, "an HTTP method in capitals (GET, POST, PUT, DELETE)");
    if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
    else {
        lua_newtable(L);
        lua_replace(L, 4);
    }
    opts = 4;
    lua_settop(L, 4);
    lua_getfield(L, opts, "query");
    q = lua_gettop(L);
    if (!lua_isnil(L, q) && !lua_istable(L, q)) luaL_argerror(L, 4, "opts.query must be a table");
    lua_getfield(L, opts, "headers");
    hdrs = lua_gettop(L);
    if (!lua_isnil(L, hdrs) && !lua_istable(L, hdrs)) luaL_argerror(L, 4, "opts.headers must be a table");
    lua_getfield(L, opts, "body");
    body = lua_gettop(L);
    if (!c->access_token) return not_yet(L, "tokens");
    if (!skip_due && eo_refresh_due(c, now)) return not_yet(L, "refresh");
    if (!c->division && path[0] != '/' && !is_absolute(path)) return not_yet(L, "division");
    if (rate_decide(L, c, now, 0) == 2) return 2;
    wait = lua_gettop(L); /* returned with the request */
    if (lua_istable(L, body)) {
        if (!eo_json_encode(L, body))
            return eo_fail(L, "api", 0, "encode", lua_tostring(L, -1), NULL,
                           "the body table cannot be sent as JSON");
        lua_replace(L, body);
    } else if (!lua_isnil(L, body) && lua_type(L, body) != LUA_TSTRING) {
        luaL_argerror(L, 4, "opts.body must be a table or a string");
    }
    if (strlen(path) != path_len)
        return eo_fail(L, "config", 0, "bad_url", "the path contains a NUL byte", NULL,
                       "check the path given to the request");

    if (is_absolute(path)) {
        lua_pushstring(L, path);
    } else if (path[0] == '/') {
        lua_pushfstring(L, "%s%s", c->base_url, path);
    } else {
        snprintf(division, sizeof division, "%lld", (long long)c->division);
        lua_pushfstring(L, "%s/api/v1/%s/%s", c->base_url, division, path);
    }
    has_query = strchr(lua_tostring(L, -1), '?') != NULL;
    if (lua_istable(L, q)) {
        push_query(L, q, has_query);
        lua_concat(L, 2);
    }
    url = lua_gettop(L);
    if (bad_header_text(lua_tostring(L, url), eo_rawlen(L, url)) || !eo_origin(L, lua_tostring(L, url), &why))
        return eo_fail(L, "config", 0, "bad_url", why ? why : "the URL contains a line break or NUL", NULL,
                       "check the path given to the request");
    if (strcmp(lua_tostring(L, -1), c->origin) != 0) {
        lua_pushfstring(L, "refusing to send the access token to %s: only %s is Exact Online here",
                        lua_tostring(L, -1), c->origin);
        return eo_fail(L, "config", 0, "foreign_origin", lua_tostring(L, -1), NULL,
                       "give a path (\"crm/Accounts\", \"/api/v1/current/Me\") or a URL on the base URL's host");
    }
    lua_pop(L, 1);
    if (is_absolute(path) && !rebase(L, c, url))
        return eo_fail(L, "config", 0, "bad_url", "the URL cannot be parsed", NULL,
                       "check the path given to the request");

    lua_createtable(L, 0, 5);
    out = lua_gettop(L);
    lua_pushstring(L, method);
    lua_setfield(L, out, "method");
    lua_pushvalue(L, url);
    lua_setfield(L, out, "url");
    lua_pushnumber(L, c->timeout);
    lua_setfield(L, out, "timeout");
    lua_createtable(L, 0, 4);
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "Accept");
    if (!lua_isnil(L, body)) {
        lua_pushliteral(L, "application/json");
        lua_setfield(L, -2, "Content-Type");
        lua_pushvalue(L, body);
        lua_setfield(L, out, "body");
    }
    if (lua_istable(L, hdrs)) {
        lua_pushnil(L);
        while (lua_next(L, hdrs)) {
            size_t kl, vl;
            const char *k, *v;
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, 4, "opts.headers names and values must be strings");
            k = lua_tolstring(L, -2, &kl);
            v = lua_tolstring(L, -1, &vl);
            if (bad_header_text(k, kl) || bad_header_text(v, vl) || strchr(k, ':') || kl == 0)
                return eo_fail(L, "config", 0, "bad_header", "a header name or value holds CR, LF, NUL or ':'",
                               NULL, "remove line breaks from header values");
            if (strcasecmp(k, "Authorization") == 0)
                luaL_argerror(L, 4, "the Authorization header is the client's own");
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    lua_pushfstring(L, "Bearer %s", c->access_token);
    lua_setfield(L, -2, "Authorization");
    lua_setfield(L, out, "headers");
    lua_pushvalue(L, wait);
    return 2;
}

/* The words of an error answer: error.message.value, error.message, error_description, or the
 * <title> of an HTML page. Pushes a string or nothing (returns 0). */
static int push_error_words(lua_State *L, int body, int data) {
    size_t len;
    const char *s = lua_tolstring(L, body, &len), *t, *e;
    if (data && lua_istable(L, data)) {
        if (eo_getfield(L, data, "error") == LUA_TTABLE) {
            if (eo_getfield(L, -1, "message") == LUA_TTABLE) {
                if (eo_getfield(L, -1, "value") == LUA_TSTRING) {
                    lua_replace(L, -3);
                    lua_pop(L, 1);
                    return 1;
                }
                lua_pop(L, 1);
            }
            if (lua_type(L, -1) == LUA_TSTRING) {
                lua_replace(L, -2);
                return 1;
            }
            lua_pop(L, 1);
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            return 1;
        }
        lua_pop(L, 1);
        if (eo_getfield(L, data, "error_description") == LUA_TSTRING) return 1;
        lua_pop(L, 1);
        if (eo_getfield(L, data, "Message") == LUA_TSTRING) return 1;
        lua_pop(L, 1);
        return 0;
    }
    if (s && len && (t = strstr(s, "<title>")) && (e = strstr(t, "</title>"))) {
        lua_pushfstring(L, "an HTML page: ");
        lua_pushlstring(L, t + 7, (size_t)(e - t - 7));
        lua_concat(L, 2);
        return 1;
    }
    if (s && len && (memchr(s, '<', len < 64 ? len : 64))) {
        lua_pushliteral(L, "an HTML page instead of JSON");
        return 1;
    }
    return 0;
}

static const char *status_hint(long status) {
    switch (status) {
    case 400: return "Exact refused the request as malformed: check the path, the query ($filter syntax) and the body";
    case 401: return "the access token was refused: authorize again if refreshing does not help (exactonline auth)";
    case 403: return "the user or app lacks the right for this division or endpoint (check the division and "
                     "the app's scopes)";
    case 404: return "check the path: service/Entity, e.g. crm/Accounts; guids as guid'…'";
    case 429: return "the rate limit is spent: wait for its reset (see client:rate_limits())";
    default:
        if (status >= 300 && status < 400) return "check the region/base_url: it must be Exact Online's API host";
        return status >= 500 ? "Exact Online had a problem: try again later" : NULL;
    }
}

/* absorb(resp, expect) -> {status, headers, body, data} | nil, err
 * expect: nil or true (JSON), false (the XML API: any body), "raw" (only the rate-limit headers are
 * taken; the answer is left to the caller, whatever its status, and nothing is returned) */
static int client_absorb(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    long status;
    int headers, body, data = 0, json = 0, words, expect_json;
    size_t len = 0, blank = 0;
    const char *s, *ctype = NULL, *reason = NULL;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_type(L, 3) == LUA_TSTRING && strcmp(lua_tostring(L, 3), "raw") == 0) {
        lua_getfield(L, 2, "headers");
        eo_absorb_rate_limits(L, c, -1);
        return 0;
    }
    expect_json = lua_isnoneornil(L, 3) || lua_toboolean(L, 3); /* false only for the XML API */
    lua_settop(L, 2);
    lua_getfield(L, 2, "status");
    status = (long)eo_optwhole(L, -1, 100, 999, 0);
    if (!status)
        return eo_fail(L, "decode", 0, "bad_status", "the transport's answer carries no HTTP status", NULL,
                       "a transport answers { status = 200, headers = {…}, body = \"…\" }");
    lua_getfield(L, 2, "headers");
    headers = lua_gettop(L);
    if (lua_istable(L, headers)) {
        eo_absorb_rate_limits(L, c, headers);
        ctype = eo_header(L, headers, "content-type"); /* stays pushed, like reason and body */
        reason = eo_header(L, headers, "reason");
    }
    lua_getfield(L, 2, "body");
    body = lua_gettop(L);
    s = lua_type(L, body) == LUA_TSTRING ? lua_tolstring(L, body, &len) : NULL;
    if (s) {
        const char *p = s;
        while (p < s + len && isspace((unsigned char)*p)) p++;
        blank = (size_t)(p - s);
        json = (ctype && strstr(ctype, "json")) ||
               (!(ctype && (strstr(ctype, "xml") || strstr(ctype, "html"))) && p < s + len &&
                (*p == '{' || *p == '['));
        if (p == s + len) json = 0;
    }
    if (json) {
        if (eo_json_decode(L, body)) {
            data = lua_gettop(L);
        } else if (status >= 200 && status < 300) {
            return eo_fail(L, "decode", status, NULL, lua_tostring(L, -1), reason,
                           "Exact's answer was cut short or is not JSON: try again");
        } else {
            lua_pop(L, 1);
        }
    }
    if (status >= 200 && status < 300) {
        if (expect_json && !data && s && blank < len) {
            lua_pushfstring(L, "Exact Online answered HTTP %d with %s instead of JSON", (int)status,
                            ctype ? ctype : "a body without a content type");
            return eo_fail(L, "decode", status, "not_json", lua_tostring(L, -1), reason,
                           "an HTML page usually means a proxy or maintenance page: try again later");
        }
        if (data && lua_istable(L, data) && eo_getfield(L, data, "error") != LUA_TNIL) {
            lua_pop(L, 1);
            words = push_error_words(L, body, data);
            return eo_fail(L, "api", status, NULL, words ? lua_tostring(L, -1) : "an error inside a 200 answer",
                           reason, NULL);
        }
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, (lua_Integer)status);
        lua_setfield(L, -2, "status");
        lua_pushvalue(L, headers);
        lua_setfield(L, -2, "headers");
        lua_pushvalue(L, body);
        lua_setfield(L, -2, "body");
        if (data) {
            lua_pushvalue(L, data);
            lua_setfield(L, -2, "data");
        }
        return 1;
    }
    words = push_error_words(L, body, data);
    if (!words && reason) lua_pushstring(L, reason), words = 1;
    if (!words) { /* an error always says something: a bare 500, a redirect */
        lua_pushfstring(L, status >= 300 && status < 400 ? "Exact Online answered with a redirect (HTTP %d); "
                                                           "redirects are never followed"
                                                         : "Exact Online answered HTTP %d without an explanation",
                        (int)status);
        words = 1;
    }
    eo_push_error(L, status == 429 ? "rate_limit" : status >= 500 || status < 400 ? "http" : "api", status, NULL,
                  words ? lua_tostring(L, -1) : NULL, reason, status_hint(status));
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

const luaL_Reg eo_api_methods[] = {
    {"prepare", client_prepare},
    {"absorb", client_absorb},
    {"rate_limits", client_rate_limits},
    {"rate_wait", client_rate_wait},
    {NULL, NULL}};
