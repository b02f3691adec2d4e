/* The libcurl transport: one easy handle per client, reused (keep-alive, TLS session reuse).
 * TLS verification is always on, redirects are never followed, answers are capped in size.
 * Callbacks only append into buffers owned by the client userdata: no Lua in them. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include "http.h"

static int buf_add(eo_buf *b, const char *p, size_t n, size_t cap) {
    if (b->len + n > cap) return 0;
    if (b->len + n + 1 > b->cap) {
        size_t want = b->cap ? b->cap : 16384;
        char *d;
        while (want < b->len + n + 1) want *= 2;
        if (!(d = realloc(b->data, want))) return 0;
        b->data = d;
        b->cap = want;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 1;
}

static void buf_free(eo_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    eo_client *c = (eo_client *)ud;
    if (!buf_add(&c->resp_body, p, size * n, c->max_response)) {
        c->too_large = 1;
        return 0; /* CURLE_WRITE_ERROR ends the transfer */
    }
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    eo_client *c = (eo_client *)ud;
    if (n * size >= 5 && memcmp(p, "HTTP/", 5) == 0) c->resp_headers.len = 0; /* a new (final) status */
    if (!buf_add(&c->resp_headers, p, size * n, 1024 * 1024)) return 0;
    return size * n;
}

/* The request header list carries "Authorization: Bearer …": wipe each line before it is freed. */
static void free_req_headers(eo_client *c) {
    struct curl_slist *h;
    for (h = c->req_headers; h; h = h->next)
        if (h->data) eo_wipe(h->data, strlen(h->data));
    curl_slist_free_all(c->req_headers);
    c->req_headers = NULL;
}

void eo_http_free(eo_client *c) {
    if (c->multi) eo_multi_detach(c); /* closed while a transfer runs: take it out of the multi first */
    if (c->curl) curl_easy_cleanup(c->curl);
    c->curl = NULL;
    free_req_headers(c);
    if (c->resp_body.data) eo_wipe(c->resp_body.data, c->resp_body.len); /* may hold tokens */
    buf_free(&c->resp_body);
    buf_free(&c->resp_headers);
}

static const char *curl_code_name(CURLcode rc) {
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL: return "CURLE_UNSUPPORTED_PROTOCOL";
    case CURLE_URL_MALFORMAT: return "CURLE_URL_MALFORMAT";
    case CURLE_COULDNT_RESOLVE_HOST: return "CURLE_COULDNT_RESOLVE_HOST";
    case CURLE_COULDNT_CONNECT: return "CURLE_COULDNT_CONNECT";
    case CURLE_WEIRD_SERVER_REPLY: return "CURLE_WEIRD_SERVER_REPLY";
    case CURLE_PARTIAL_FILE: return "CURLE_PARTIAL_FILE";
    case CURLE_WRITE_ERROR: return "CURLE_WRITE_ERROR";
    case CURLE_OPERATION_TIMEDOUT: return "CURLE_OPERATION_TIMEDOUT";
    case CURLE_SSL_CONNECT_ERROR: return "CURLE_SSL_CONNECT_ERROR";
    case CURLE_GOT_NOTHING: return "CURLE_GOT_NOTHING";
    case CURLE_SEND_ERROR: return "CURLE_SEND_ERROR";
    case CURLE_RECV_ERROR: return "CURLE_RECV_ERROR";
    case CURLE_PEER_FAILED_VERIFICATION: return "CURLE_PEER_FAILED_VERIFICATION";
    case CURLE_SSL_CACERT_BADFILE: return "CURLE_SSL_CACERT_BADFILE";
    case CURLE_SSL_CERTPROBLEM: return "CURLE_SSL_CERTPROBLEM";
    case CURLE_BAD_CONTENT_ENCODING: return "CURLE_BAD_CONTENT_ENCODING";
    case CURLE_FILESIZE_EXCEEDED: return "CURLE_FILESIZE_EXCEEDED";
    case CURLE_HTTP2: return "CURLE_HTTP2";
    default: return NULL;
    }
}

static int is_tls(CURLcode rc) {
    return rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
           rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CIPHER ||
           rc == CURLE_SSL_ENGINE_NOTFOUND || rc == CURLE_SSL_ISSUER_ERROR || rc == CURLE_SSL_CRL_BADFILE;
}

static int fail_curl(lua_State *L, eo_client *c, CURLcode rc) {
    const char *name = curl_code_name(rc), *hint;
    if (!name) {
        lua_pushfstring(L, "CURLE_%d", (int)rc);
        name = lua_tostring(L, -1);
    }
    if (c->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        lua_pushfstring(L, "the answer is larger than max_response_size (%d bytes)", (int)c->max_response);
        return eo_fail(L, "network", 0, "CURLE_FILESIZE_EXCEEDED", lua_tostring(L, -1), NULL,
                       "ask for less ($select, $filter, $top) or raise config.max_response_size");
    }
    lua_pushfstring(L, "%s%s%s", curl_easy_strerror(rc), c->errbuf[0] ? ": " : "", c->errbuf);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: hint = "no answer within config.timeout: try again, or raise timeout"; break;
    case CURLE_COULDNT_RESOLVE_HOST: hint = "check the network and the region/base_url"; break;
    case CURLE_COULDNT_CONNECT: hint = "check the network, a proxy or firewall, and the base_url"; break;
    case CURLE_PEER_FAILED_VERIFICATION:
        hint = "the server's certificate is not trusted: for a private CA give config.cafile; "
               "verification cannot be switched off";
        break;
    default: hint = is_tls(rc) ? "check the TLS setup (config.cafile/capath)" : "try again later";
    }
    return eo_fail(L, is_tls(rc) ? "tls" : "network", 0, name, lua_tostring(L, -1), NULL, hint);
}

static CURL *handle(lua_State *L, eo_client *c) {
    if (!c->curl && !(c->curl = curl_easy_init())) luaL_error(L, "exactonline: curl_easy_init failed");
    /* reset keeps live connections and the TLS session cache; we set everything again */
    curl_easy_reset(c->curl);
    return c->curl;
}

/* Push the raw header block as a table of lower-case names; repeats joined with ", ". */
static void push_headers(lua_State *L, eo_client *c) {
    char *p = c->resp_headers.data, *end = p ? p + c->resp_headers.len : NULL;
    lua_newtable(L);
    while (p && p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve, *k;
        if (!eol) eol = end;
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && colon > p && memcmp(p, "HTTP/", 5) != 0) {
            for (k = p; k < colon; k++)
                if (*k >= 'A' && *k <= 'Z') *k = (char)(*k - 'A' + 'a');
            v = colon + 1;
            ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            lua_pushlstring(L, p, (size_t)(colon - p));
            lua_pushvalue(L, -1);
            lua_rawget(L, -3);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
            } else {
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_concat(L, 3);
            }
            lua_rawset(L, -3);
        }
        p = eol + 1;
    }
}

/* A method is an RFC 7230 token (tchar only): no space, CR, LF or NUL can reach the request line. */
static int is_token(const char *s, size_t n) {
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t i;
    if (n == 0 || n > 32) return 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              (ch && strchr(tchar, ch))))
            return 0;
    }
    return 1;
}

/* Set up c's easy handle for the request table at idx ({method, url, headers, body, timeout}).
 * copy_body: libcurl keeps its own copy of the body (the transfer outlives this call); otherwise the
 * body string is left on the stack and must stay there until the transfer ends.
 * Returns 1, or 0 with nil, err pushed (2 values). */
int eo_http_prepare(lua_State *L, eo_client *c, int idx, int copy_body) {
    const char *method, *url, *body = NULL;
    size_t body_len = 0, method_len;
    double timeout;
    int top;
    CURL *h;
    curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    idx = eo_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    top = lua_gettop(L);
    lua_getfield(L, idx, "method");
    method = luaL_optlstring(L, top + 1, "GET", &method_len);
    lua_getfield(L, idx, "url");
    url = luaL_checkstring(L, top + 2);
    lua_getfield(L, idx, "body");
    if (!lua_isnil(L, top + 3)) body = luaL_checklstring(L, top + 3, &body_len);
    lua_getfield(L, idx, "timeout");
    timeout = luaL_optnumber(L, top + 4, c->timeout);
    if (!eo_within(timeout, 0.001, EO_MAX_SECONDS)) timeout = c->timeout; /* never a NaN into a long */
    if (!is_token(method, method_len)) {
        eo_fail(L, "config", 0, "bad_method", "the HTTP method is not a token (RFC 7230): no spaces, line breaks or "
                "control characters", NULL, "use GET, POST, PUT or DELETE");
        return 0;
    }
    if (eo_keylog_refused()) {
        eo_fail(L, "config", 0, "keylog", EO_KEYLOG_MESSAGE, NULL, EO_KEYLOG_HINT);
        return 0;
    }

    free_req_headers(c);
    lua_getfield(L, idx, "headers");
    if (lua_istable(L, top + 5)) {
        lua_pushnil(L);
        while (lua_next(L, top + 5)) {
            struct curl_slist *n;
            size_t kl, vl;
            const char *k, *v;
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, idx, "headers must map strings to strings");
            k = lua_tolstring(L, -2, &kl);
            v = lua_tolstring(L, -1, &vl);
            if (strpbrk(k, "\r\n:") || strpbrk(v, "\r\n") || strlen(k) != kl || strlen(v) != vl) {
                eo_fail(L, "config", 0, "bad_header", "a header holds CR, LF or NUL", NULL, NULL);
                return 0;
            }
            lua_pushfstring(L, "%s: %s", k, v);
            n = curl_slist_append(c->req_headers, lua_tostring(L, -1));
            if (!n) return luaL_error(L, "exactonline: out of memory");
            c->req_headers = n;
            lua_pop(L, 2);
        }
    }
    if (!(c->req_headers = curl_slist_append(c->req_headers, "Expect:")))
        return luaL_error(L, "exactonline: out of memory");

    h = handle(L, c);
    c->resp_body.len = c->resp_headers.len = 0;
    c->too_large = 0;
    c->errbuf[0] = '\0';
    lua_pushfstring(L, "exactonline/" EO_VERSION " (libcurl/%s)", vi->version);
    curl_easy_setopt(h, CURLOPT_USERAGENT, lua_tostring(L, -1)); /* libcurl copies strings */
    lua_pop(L, 1);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    /* extra trust: cafile replaces only the bundle file; the system's CA folder stays in use */
    if (c->cafile) curl_easy_setopt(h, CURLOPT_CAINFO, c->cafile);
    if (c->capath) curl_easy_setopt(h, CURLOPT_CAPATH, c->capath);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)ceil(timeout * 1000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil((timeout < 10 ? timeout : 10) * 1000));
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "gzip");
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->req_headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_PRIVATE, (void *)c);
    /* the handle is reused: undo what the previous request set (a DELETE must not stick to the next GET) */
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, (char *)NULL);
    curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
    /* A write goes on a new connection: on a kept-alive one the server closed meanwhile, libcurl would send it
     * again by itself when no answer came, and a POST that did reach Exact would be made twice (RFC 7230
     * 6.3.1). A GET may be sent again, and keeps the kept-alive connection. */
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT,
                     (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) ? 0L : 1L);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            curl_easy_setopt(h, copy_body ? CURLOPT_COPYPOSTFIELDS : CURLOPT_POSTFIELDS, body ? body : "");
        }
        if (strcmp(method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (strcmp(method, "HEAD") == 0) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    }
    return 1;
}

/* After c's transfer ended with rc: push {status, headers, body}, or nil, err. Returns the count. */
int eo_http_finish(lua_State *L, eo_client *c, CURLcode rc) {
    long status = 0;
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, (char *)NULL);
    free_req_headers(c);
    if (rc != CURLE_OK) return fail_curl(L, c, rc);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
    push_headers(L, c);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, c->resp_body.data ? c->resp_body.data : "", c->resp_body.len);
    lua_setfield(L, -2, "body");
    eo_wipe(c->resp_body.data, c->resp_body.len);
    c->resp_body.len = 0;
    return 1;
}

/* perform({method, url, headers, body, timeout}) -> {status, headers, body} | nil, err */
static int client_perform(lua_State *L) {
    eo_client *c = eo_checkclient(L, 1);
    CURLcode rc;
    lua_settop(L, 2);
    if (c->multi) return luaL_error(L, "exactonline: this client has a transfer running in a multi handle");
    if (!eo_http_prepare(L, c, 2, 0)) return 2;
    rc = curl_easy_perform(c->curl);
    return eo_http_finish(L, c, rc);
}

const luaL_Reg eo_http_methods[] = {{"perform", client_perform}, {NULL, NULL}};

/* core.now() -> epoch seconds with a fraction */
static int l_now(lua_State *L) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    lua_pushnumber(L, (double)tv.tv_sec + tv.tv_usec / 1e6);
    return 1;
}

/* core.sleep(seconds): blocking; the ngx transport brings ngx.sleep instead */
static int l_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    struct timespec ts, rem;
    luaL_argcheck(L, eo_within(s, -EO_MAX_SECONDS, EO_MAX_SECONDS), 1, "seconds to sleep, at most a day");
    if (s <= 0) return 0;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &rem) == -1 && errno == EINTR) ts = rem;
    return 0;
}

/* core.http_date(s) -> epoch seconds | nil: an HTTP Date header (RFC 7231, and the two obsolete forms)
 * through curl_getdate; nil for anything else and for dates before 2000 or past EO_MAX_EPOCH (a server
 * clock that reads 1970 is broken, not ours off by decades). */
static int l_http_date(lua_State *L) {
    const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
    time_t t = s && strlen(s) < 128 ? curl_getdate(s, NULL) : -1;
    if (t == -1 || !eo_within((double)t, 946684800.0, EO_MAX_EPOCH)) return 0;
    eo_pushnum(L, (double)t);
    return 1;
}

void eo_open_http(lua_State *L) {
    static const luaL_Reg fns[] = {{"now", l_now}, {"sleep", l_sleep}, {"http_date", l_http_date}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
