/* For the static analysers only (make analyze, -include): Lua's error functions never return,
 * but lauxlib.h does not say so, and without this every `if (!p) luaL_error(...); p[0]` reads
 * as a NULL dereference to clang-tidy and cppcheck. Redeclaring adds the attribute. */
#include <lua.h>
#include <lauxlib.h>
int lua_error(lua_State *L) __attribute__((noreturn));
int luaL_error(lua_State *L, const char *fmt, ...) __attribute__((noreturn));
int luaL_argerror(lua_State *L, int arg, const char *extramsg) __attribute__((noreturn));
int luaL_typeerror(lua_State *L, int arg, const char *tname) __attribute__((noreturn));
