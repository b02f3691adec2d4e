/* The exactonline.Client userdata: configuration, secrets, tokens and rate-limit state.
 * Made the liolib.c way: a zeroed, closed userdata first, then filled, so __gc copes
 * with a half-built object. It decides and parses; the Lua client drives the I/O. Users never hold
 * it: the object they hold (exactonline.client) keeps it private and calls its methods. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "client.h"
#include "http.h"

static const struct { const char *region, *url; } regions[] = {
    {"nl", "https://start.exactonline.nl"}, {"be", "https://start.exactonline.be"},
    {"de", "https://start.exactonline.de"}, {"fr", "https://start.exactonline.fr"},
    {"es", "https://start.exactonline.es"}, {"uk", "https://start.exactonline.co.uk"},
    {"us", "https://start.exactonline.com"}, {NULL, NULL}};

char *eo_strdup(lua_State *L, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) luaL_error(L, "exactonline: out of memory");
    memcpy(p, s, n);
    return p;
}

static void free_secret(char **slot) {
    if (*slot) {
        eo_wipe(*slot, strlen(*slot));
        free(*slot);
        *slot = NULL;
    }
}

void eo_setsecret(lua_State *L, char **slot, const char *s) {
    char *copy = s ? eo_strdup(L, s) : NULL; /* may raise: before the old value is touched */
    free_secret(slot);
    *slot = copy;
}

void eo_set_access_token(lua_State *L, eo_client *c, const char *s) {
    eo_setsecret(L, &c->access_token, s);
    c->early_refused = 0;
}

eo_client *eo_checkclient(lua_State *L, int idx) {
    eo_client *c = (eo_client *)luaL_checkudata(L, idx, EO_CLIENT_MT);
    if (c->closed) luaL_error(L, "attempt to use a closed exactonline client");
    return c;
}

/* One close for close(), __gc and __close: safe twice, every pointer NULL after free. */
static int client_close(lua_State *L) {
    eo_client *c = (eo_client *)luaL_checkudata(L, 1, EO_CLIENT_MT);
    if (c->closed) return 0;
    c->closed = 1;
    eo_http_free(c);
    free_secret(&c->client_secret);
    free_secret(&c->access_token);
    free_secret(&c->refresh_token);
    free(c->base_url), c->base_url = NULL;
    free(c->origin), c->origin = NULL;
    free(c->client_id), c->client_id = NULL;
    free(c->redirect_uri), c->redirect_uri = NULL;
    free(c->cafile), c->cafile = NULL;
    free(c->capath), c->capath = NULL;
    return 0;
}

static int client_tostring(lua_State *L) {
    eo_client *c = (eo_client *)luaL_checkudata(L, 1, EO_CLIENT_MT);
    luaL_Buffer b;
    if (c->closed) {
        lua_pushfstring(L, EO_CLIENT_MT " (%p) closed", (void *)c);
        return 1;
    }
    luaL_buffinit(L, &b);
    lua_pushfstring(L, EO_CLIENT_MT " (%p) %s", (void *)c, c->base_url);
    luaL_addvalue(&b);
    if (c->division) {
        char division[32];
        snprintf(division, sizeof division, " division %lld", (long long)c->division);
        lua_pushstring(L, division);
        luaL_addvalue(&b);
    } else {
        luaL_addstring(&b, " division ?");
    }
    if (c->access_token) {
        char when[32] = "?";
        struct tm tm;
        if (c->expires_at > 0 && c->expires_at < 253402300800.0) { /* before year 10000 */
            time_t t = (time_t)c->expires_at;
            if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
        luaL_addstring(&b, ", access token expires ");
        luaL_addstring(&b, when);
    } else {
        luaL_addstring(&b, ", not authorized");
    }
    luaL_pushresult(&b);
    return 1;
}

/* Push config[k] and return it as a string (NULL when absent or empty). The value stays on the
 * stack: the pointer is good only while it is there, so callers copy, then pop. */
static const char *opt_string(lua_State *L, const char *k) {
    const char *s = NULL;
    int t = eo_getfield(L, 1, k);
    if (t == LUA_TSTRING) s = lua_tostring(L, -1);
    else if (t != LUA_TNIL) luaL_error(L, "exactonline.new: config.%s must be a string", k);
    return (s && *s) ? s : NULL;
}

/* A copy of config[k] (NULL when absent or empty), owned by the caller. */
static char *opt_copy(lua_State *L, const char *k) {
    const char *s = opt_string(L, k);
    char *copy = s ? eo_strdup(L, s) : NULL;
    lua_pop(L, 1);
    return copy;
}

/* config[k] as a number from min to max (whole when asked); NaN, infinities and anything out of
 * range raise: converting them to an integer or a libcurl long would be undefined behaviour. */
static double opt_number(lua_State *L, const char *k, double dflt, double min, double max, int whole) {
    double v = dflt;
    int t = eo_getfield(L, 1, k);
    if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
    else if (t != LUA_TNIL) luaL_error(L, "exactonline.new: config.%s must be a number", k);
    lua_pop(L, 1);
    if (!eo_within(v, min, max) || (whole && v != floor(v))) {
        char range[96];
        snprintf(range, sizeof range, "%s from %.15g to %.15g", whole ? "a whole number" : "a number", min, max);
        luaL_error(L, "exactonline.new: config.%s must be %s (got %f)", k, range, v);
    }
    return v;
}

static void fill(lua_State *L, eo_client *c) {
    const char *region, *base, *why = NULL, *s;
    size_t n;
    int i;
    lua_settop(L, 2); /* config, client */
    region = opt_string(L, "region"); /* 3 */
    base = opt_string(L, "base_url"); /* 4 */
    if (!base && region) {
        for (i = 0; regions[i].region; i++)
            if (strcmp(regions[i].region, region) == 0) base = regions[i].url;
        if (!base)
            luaL_error(L, "exactonline.new: unknown region '%s' (nl be de fr es uk us, or give base_url)",
                       region);
    }
    if (!base) luaL_error(L, "exactonline.new: config.region or config.base_url is required");
    if (strncmp(base, "https://", 8) != 0)
        luaL_error(L, "exactonline.new: base_url must be an https:// URL");
    c->base_url = eo_strdup(L, base);
    lua_settop(L, 2);
    n = strlen(c->base_url);
    while (n > 8 && c->base_url[n - 1] == '/') c->base_url[--n] = '\0';
    if (!eo_origin(L, c->base_url, &why)) luaL_error(L, "exactonline.new: base_url: %s", why);
    c->origin = eo_strdup(L, lua_tostring(L, -1));
    lua_pop(L, 1);

    if (!(c->client_id = opt_copy(L, "client_id"))) luaL_error(L, "exactonline.new: config.client_id is required");
    if (!(c->client_secret = opt_copy(L, "client_secret")))
        luaL_error(L, "exactonline.new: config.client_secret is required");
    c->redirect_uri = opt_copy(L, "redirect_uri");
    c->cafile = opt_copy(L, "cafile");
    c->capath = opt_copy(L, "capath");

    c->division = (lua_Integer)opt_number(L, "division", 0, 0, EO_MAX_WHOLE, 1);
    c->timeout = opt_number(L, "timeout", 30, 0.001, EO_MAX_SECONDS, 0);
    c->max_wait = opt_number(L, "max_wait", 120, 0, EO_MAX_SECONDS, 0);
    c->max_response = (size_t)opt_number(L, "max_response_size", 64.0 * 1024 * 1024, 1024, 2147483647.0, 1);
    c->max_pages = (lua_Integer)opt_number(L, "max_pages", EO_MAX_PAGES, 1, 1e9, 1);
    s = opt_string(L, "on_rate_limit");
    if (!s || strcmp(s, "wait") == 0) c->wait_on_rate_limit = 1;
    else if (strcmp(s, "error") == 0) c->wait_on_rate_limit = 0;
    else luaL_error(L, "exactonline.new: config.on_rate_limit must be \"wait\" or \"error\"");
    lua_settop(L, 2);
}

/* core.client_new(config) -> exactonline.Client */
static int l_client_new(lua_State *L) {
    eo_client *c;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (eo_keylog_refused()) luaL_error(L, "exactonline.new: " EO_KEYLOG_MESSAGE "; " EO_KEYLOG_HINT);
    c = (eo_client *)lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    c->closed = 1; /* until filled: __gc of a half-built client frees only what it has */
    c->rl_min_limit = c->rl_min_remaining = c->rl_min_reset = -1;
    c->rl_day_limit = c->rl_day_remaining = c->rl_day_reset = -1;
    luaL_getmetatable(L, EO_CLIENT_MT);
    lua_setmetatable(L, -2);
    c->closed = 0;
    fill(L, c); /* raises on bad config; __gc then frees the partial copy */
    return 1;
}

/* ---- tokens ---- */

void eo_pushnum(lua_State *L, double v) {
    /* range first: converting inf, NaN or a huge double to an integer is undefined */
    if (v > -9.2e18 && v < 9.2e18 && v == (double)(lua_Integer)v) lua_pushinteger(L, (lua_Integer)v);
    else lua_pushnumber(L, v);
}

static void set_num(lua_State *L, const char *k, double v) {
    if (v > 0) {
        eo_pushnum(L, v);
        lua_setfield(L, -2, k);
    }
}

/* whole epoch seconds for people and os.date (which refuses fractions on Lua 5.4) */
static void set_time(lua_State *L, const char *k, double v) {
    set_num(L, k, floor(v));
}

/* tokens() -> a copy for the store | nil */
static int client_tokens(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    if (!c->access_token && !c->refresh_token) return 0;
    eo_push_tokens(L, c);
    return 1;
}

void eo_push_tokens(lua_State *L, eo_client *c) {
    lua_createtable(L, 0, 5);
    if (c->access_token) {
        lua_pushstring(L, c->access_token);
        lua_setfield(L, -2, "access_token");
    }
    if (c->refresh_token) {
        lua_pushstring(L, c->refresh_token);
        lua_setfield(L, -2, "refresh_token");
    }
    set_num(L, "expires_at", c->expires_at);
    set_num(L, "obtained_at", c->obtained_at);
    set_num(L, "refresh_obtained_at", c->refresh_obtained_at);
}

static double tnum(lua_State *L, const char *k) {
    double v = 0;
    int t = eo_getfield(L, 2, k);
    if (t == LUA_TNUMBER || (t == LUA_TSTRING && lua_isnumber(L, -1))) v = lua_tonumber(L, -1);
    else if (t != LUA_TNIL) luaL_error(L, "exactonline: tokens.%s must be a number", k);
    lua_pop(L, 1);
    if (!eo_within(v, 0, EO_MAX_EPOCH))
        luaL_error(L, "exactonline: tokens.%s must be epoch seconds (got %f)", k, v);
    return v;
}

/* Push tokens[k] and return it as a string (NULL when absent or empty); it stays on the stack. */
static const char *tstr(lua_State *L, const char *k) {
    const char *s = NULL;
    int t = eo_getfield(L, 2, k);
    if (t == LUA_TSTRING) s = lua_tostring(L, -1);
    else if (t != LUA_TNIL) luaL_error(L, "exactonline: tokens.%s must be a string", k);
    return (s && *s) ? s : NULL;
}

/* set_tokens(t | nil): adopt a pair (from the store). */
static int client_set_tokens(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    const char *at, *rt;
    double exp, obt, robt;
    if (lua_isnoneornil(L, 2)) {
        eo_set_access_token(L, c, NULL);
        eo_setsecret(L, &c->refresh_token, NULL);
        c->expires_at = c->obtained_at = c->refresh_obtained_at = 0;
        return 0;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    at = tstr(L, "access_token");  /* 3 */
    rt = tstr(L, "refresh_token"); /* 4: both stay until copied */
    exp = tnum(L, "expires_at");
    obt = tnum(L, "obtained_at");
    robt = tnum(L, "refresh_obtained_at");
    if (!at && !rt) luaL_argerror(L, 2, "tokens need an access_token or a refresh_token");
    if (!obt && exp) obt = exp - EO_ACCESS_LIFETIME;
    if (!exp && obt) exp = obt + EO_ACCESS_LIFETIME;
    eo_set_access_token(L, c, at);
    eo_setsecret(L, &c->refresh_token, rt);
    c->expires_at = exp;
    c->obtained_at = obt;
    c->refresh_obtained_at = robt ? robt : obt;
    return 0;
}

/* token_info() -> times only, never a secret */
static int client_token_info(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    lua_createtable(L, 0, 6);
    lua_pushboolean(L, c->access_token != NULL);
    lua_setfield(L, -2, "has_access_token");
    lua_pushboolean(L, c->refresh_token != NULL);
    lua_setfield(L, -2, "has_refresh_token");
    set_time(L, "expires_at", c->expires_at);
    set_time(L, "obtained_at", c->obtained_at);
    set_time(L, "refresh_obtained_at", c->refresh_obtained_at);
    if (c->refresh_token && c->refresh_obtained_at > 0)
        set_time(L, "refresh_expires_at", c->refresh_obtained_at + EO_REFRESH_LIFETIME);
    return 1;
}

/* refresh_allowed(now) -> true | false, allowed_at: Exact refuses refreshes sooner than 570 s. */
static int client_refresh_allowed(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    double now = eo_checktime(L, 2), at = c->obtained_at + EO_REFRESH_MIN_AGE;
    if (c->obtained_at <= 0 || now >= at) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    eo_pushnum(L, ceil(at));
    return 2;
}

int eo_refresh_due(const eo_client *c, double now) {
    return c->refresh_token && !c->early_refused && c->expires_at > 0 &&
           now >= c->expires_at - EO_REFRESH_WINDOW && now >= c->obtained_at + EO_REFRESH_MIN_AGE;
}

/* refresh_due(now): only in the last 30 s of the access token's life, never earlier. */
static int client_refresh_due(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    lua_pushboolean(L, eo_refresh_due(c, eo_checktime(L, 2)));
    return 1;
}

/* has_token(access_token): is this the access token we hold now? (compares without copying out) */
static int client_holds(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    const char *s = luaL_optstring(L, 2, NULL);
    lua_pushboolean(L, s && c->access_token && strcmp(s, c->access_token) == 0);
    return 1;
}

static int client_division_id(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        lua_Integer d = eo_optwhole(L, 2, 1, EO_MAX_WHOLE, 0);
        luaL_argcheck(L, d > 0, 2, "a division is a positive whole number");
        c->division = d;
    }
    if (!c->division) return 0;
    lua_pushinteger(L, c->division);
    return 1;
}

static int client_base_url(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    lua_pushstring(L, c->base_url);
    return 1;
}

static int client_options(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, c->timeout);
    lua_setfield(L, -2, "timeout");
    lua_pushnumber(L, c->max_wait);
    lua_setfield(L, -2, "max_wait");
    lua_pushstring(L, c->wait_on_rate_limit ? "wait" : "error");
    lua_setfield(L, -2, "on_rate_limit");
    lua_pushstring(L, c->origin);
    lua_setfield(L, -2, "origin");
    lua_pushinteger(L, c->max_pages);
    lua_setfield(L, -2, "max_pages");
    lua_pushinteger(L, (lua_Integer)c->max_response);
    lua_setfield(L, -2, "max_response_size");
    return 1;
}

static const luaL_Reg methods[] = {
    {"close", client_close},
    {"tokens", client_tokens},
    {"set_tokens", client_set_tokens},
    {"token_info", client_token_info},
    {"refresh_allowed", client_refresh_allowed},
    {"refresh_due", client_refresh_due},
    {"holds", client_holds},
    {"division_id", client_division_id},
    {"base_url", client_base_url},
    {"options", client_options},
    {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", client_close}, {"__close", client_close}, {"__tostring", client_tostring}, {NULL, NULL}};

void eo_open_client(lua_State *L) {
    static const luaL_Reg fns[] = {{"client_new", l_client_new}, {NULL, NULL}};
    luaL_newmetatable(L, EO_CLIENT_MT);
    luaL_setfuncs(L, metamethods, 0);
    /* the private interface of exactonline.client (lua/exactonline/client.lua), which users never hold */
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    luaL_setfuncs(L, eo_oauth_methods, 0);
    luaL_setfuncs(L, eo_api_methods, 0);
    luaL_setfuncs(L, eo_http_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, EO_CLIENT_MT);
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "exactonline.Client is locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_setfuncs(L, fns, 0);
}
