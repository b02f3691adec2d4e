/* Lua 5.1/LuaJIT through 5.4 from one source. Shims are static and skipped
 * where the VM already has the function (LuaJIT has luaL_setfuncs, luaL_testudata). */
#ifndef EXACTONLINE_COMPAT_H
#define EXACTONLINE_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
#  ifndef LUA_OK
#    define LUA_OK 0
#  endif
#  define eo_rawlen(L, i) lua_objlen((L), (i))
#  define eo_absindex(L, i) (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)
#  ifndef LUA_LJDIR
/* plain Lua 5.1 lacks these; LuaJIT 2.1 provides them */
static inline void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
static inline void *luaL_testudata(lua_State *L, int i, const char *tname) {
    void *p = lua_touserdata(L, i);
    if (p == NULL || !lua_getmetatable(L, i)) return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2)) p = NULL;
    lua_pop(L, 2);
    return p;
}
#  endif
#  define eo_newlib(L, l) (lua_newtable(L), luaL_setfuncs((L), (l), 0))
#else
#  define eo_rawlen(L, i) lua_rawlen((L), (i))
#  define eo_absindex(L, i) lua_absindex((L), (i))
#  define eo_newlib(L, l) luaL_newlib((L), (l))
#endif

/* lua_getfield returns the type from 5.3 on */
static inline int eo_getfield(lua_State *L, int idx, const char *k) {
    lua_getfield(L, idx, k);
    return lua_type(L, -1);
}

#endif
