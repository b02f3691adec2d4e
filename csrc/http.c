/* placeholder: filled in by its issue */
#include "eo.h"

void eo_open_http(lua_State *L) {
    (void)L;
}
