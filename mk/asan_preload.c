/* Preloaded after the ASan runtime into the busted process only (make asan):
 * - takes LD_PRELOAD out of the environment at start-up, so the children the specs spawn (nginx,
 *   curl, sh, lua5.4 running the CLI) run as they normally do instead of under the ASan runtime;
 * - makes dlclose a no-op, so the C modules Lua unloads when it closes its state at exit are still
 *   mapped when LeakSanitizer symbolises its stacks (otherwise every frame reads "<unknown module>"). */
#include <stdlib.h>

__attribute__((constructor)) static void unpreload(void) { unsetenv("LD_PRELOAD"); }

int dlclose(void *handle) {
    (void)handle;
    return 0;
}
