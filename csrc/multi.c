/* exactonline.Multi: a libcurl multi handle that runs many clients' transfers at once, so one
 * process can talk to many divisions without one waiting for another. Each client brings its own
 * easy handle and buffers (http.c sets them up and reads the answer); the multi only drives them.
 * Lua decides what runs when (exactonline.transport.multi): nothing here calls back into Lua.
 *   m = core.multi_new()
 *   m:add(client, req)   --> true | nil, err      the transfer starts
 *   m:poll(seconds)      --> { client, … }        clients whose transfer ended (waits up to seconds)
 *   m:take(client)       --> {status, headers, body} | nil, err
 *   m:close()            also __gc and __close; transfers still running are dropped */
#include <stdlib.h>
#include <string.h>
#include "http.h"

#define MULTI_MT "exactonline.Multi"

typedef struct slot {
    eo_client *c; /* NULL once done or detached */
    int ref;      /* registry reference that keeps the client alive while its transfer runs */
} slot;

typedef struct eo_multi {
    CURLM *m;
    slot *slots;
    int n, cap;
} eo_multi;

static eo_multi *check(lua_State *L) {
    eo_multi *m = (eo_multi *)luaL_checkudata(L, 1, MULTI_MT);
    if (!m->m) luaL_error(L, "attempt to use a closed exactonline multi handle");
    return m;
}

void eo_multi_detach(eo_client *c) {
    eo_multi *m = c->multi;
    int i;
    if (!m) return;
    if (m->m && c->curl) curl_multi_remove_handle(m->m, c->curl);
    for (i = 0; i < m->n; i++)
        if (m->slots[i].c == c) m->slots[i].c = NULL; /* its ref goes at the next poll or close */
    c->multi = NULL;
}

static int multi_close(lua_State *L) {
    eo_multi *m = (eo_multi *)luaL_checkudata(L, 1, MULTI_MT);
    int i;
    if (!m->m) return 0;
    for (i = 0; i < m->n; i++) {
        eo_client *c = m->slots[i].c;
        if (c) {
            if (c->curl) curl_multi_remove_handle(m->m, c->curl);
            c->multi = NULL;
        }
        luaL_unref(L, LUA_REGISTRYINDEX, m->slots[i].ref);
    }
    curl_multi_cleanup(m->m);
    m->m = NULL;
    free(m->slots);
    m->slots = NULL;
    m->n = m->cap = 0;
    return 0;
}

static int multi_new(lua_State *L) {
    eo_multi *m = (eo_multi *)lua_newuserdata(L, sizeof *m);
    memset(m, 0, sizeof *m); /* "closed" first, so __gc copes with a half-built object */
    luaL_getmetatable(L, MULTI_MT);
    lua_setmetatable(L, -2);
    if (!(m->m = curl_multi_init())) return luaL_error(L, "exactonline: curl_multi_init failed");
    return 1;
}

static int multi_add(lua_State *L) {
    eo_multi *m = check(L);
    eo_client *c = eo_checkclient(L, 2);
    CURLMcode mc;
    lua_settop(L, 3);
    if (c->multi) return luaL_error(L, "exactonline: this client has a transfer running already");
    if (c->multi_done) return luaL_error(L, "exactonline: take() this client's answer first");
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 16;
        slot *s = (slot *)realloc(m->slots, (size_t)cap * sizeof *s);
        if (!s) return luaL_error(L, "exactonline: out of memory");
        m->slots = s;
        m->cap = cap;
    }
    if (!eo_http_prepare(L, c, 3, 1)) return 2;
    mc = curl_multi_add_handle(m->m, c->curl);
    if (mc != CURLM_OK)
        return eo_fail(L, "network", 0, "CURLM_ADD", curl_multi_strerror(mc), NULL, "try again later");
    lua_pushvalue(L, 2);
    m->slots[m->n].ref = luaL_ref(L, LUA_REGISTRYINDEX);
    m->slots[m->n].c = c;
    m->n++;
    c->multi = m;
    lua_pushboolean(L, 1);
    return 1;
}

/* Move ended transfers out of the multi into the result table at -1. */
static void collect(lua_State *L, eo_multi *m) {
    CURLMsg *msg;
    int left, i, j;
    while ((msg = curl_multi_info_read(m->m, &left))) {
        eo_client *c = NULL;
        if (msg->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        curl_multi_remove_handle(m->m, msg->easy_handle);
        for (i = 0; i < m->n; i++) {
            if (m->slots[i].c != c || !c) continue;
            c->multi_rc = msg->data.result;
            c->multi_done = 1;
            c->multi = NULL;
            lua_rawgeti(L, LUA_REGISTRYINDEX, m->slots[i].ref);
            lua_rawseti(L, -2, (int)eo_rawlen(L, -2) + 1);
            m->slots[i].c = NULL;
            break;
        }
    }
    /* drop the slots of ended or detached transfers */
    for (i = j = 0; i < m->n; i++) {
        if (m->slots[i].c) m->slots[j++] = m->slots[i];
        else luaL_unref(L, LUA_REGISTRYINDEX, m->slots[i].ref);
    }
    m->n = j;
}

static int multi_poll(lua_State *L) {
    eo_multi *m = check(L);
    double wait = luaL_optnumber(L, 2, 0);
    int running = 0;
    CURLMcode mc;
    lua_newtable(L);
    mc = curl_multi_perform(m->m, &running);
    if (mc != CURLM_OK) return luaL_error(L, "exactonline: curl_multi_perform: %s", curl_multi_strerror(mc));
    collect(L, m);
    if (eo_rawlen(L, -1) == 0 && wait > 0) {
        int ms = wait > 3600 ? 3600000 : (int)(wait * 1000 + 0.5);
        curl_multi_poll(m->m, NULL, 0, ms, NULL); /* with nothing running it just waits: the scheduler's sleep */
        mc = curl_multi_perform(m->m, &running);
        if (mc != CURLM_OK) return luaL_error(L, "exactonline: curl_multi_perform: %s", curl_multi_strerror(mc));
        collect(L, m);
    }
    lua_pushinteger(L, m->n);
    return 2;
}

static int multi_take(lua_State *L) {
    eo_client *c;
    check(L);
    c = eo_checkclient(L, 2);
    if (!c->multi_done) return luaL_error(L, "exactonline: this client has no ended transfer to take");
    c->multi_done = 0;
    return eo_http_finish(L, c, c->multi_rc);
}

static int multi_tostring(lua_State *L) {
    eo_multi *m = (eo_multi *)luaL_checkudata(L, 1, MULTI_MT);
    lua_pushfstring(L, "exactonline.Multi (%p)%s", (void *)m, m->m ? "" : " closed");
    return 1;
}

void eo_open_multi(lua_State *L) {
    static const luaL_Reg fns[] = {{"multi_new", multi_new}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"add", multi_add}, {"poll", multi_poll}, {"take", multi_take}, {"close", multi_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, MULTI_MT)) {
        eo_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, multi_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, multi_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, multi_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, fns, 0);
}
