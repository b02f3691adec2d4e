/* placeholder: filled in by its issue */
#include "eo.h"

void eo_open_webhook(lua_State *L) {
    (void)L;
}
