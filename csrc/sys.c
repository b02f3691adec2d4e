/* The few operating-system calls the CLI needs that Lua lacks: realpath, getpid/geteuid,
 * isatty, stat, mkdtemp, getrandom, files created O_EXCL|O_NOFOLLOW with a mode, clean-up of the temp files
 * a killed export left, a child process started without the environment's secrets, a SIGTERM/SIGHUP flag,
 * and for the gateway started as root: a user's ids (getpwnam) and chown.
 * Why here and not lua-posix: Debian 12's lua-posix has no Lua 5.4 build (only 5.1-5.3), and the CLI
 * runs on lua5.4; these are a dozen thin wrappers, so they live in the core the CLI loads anyway.
 * Errors are returned as nil, "what path: strerror" (luaL_fileresult style), never raised. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "box.h"

#define FILE_MT "exactonline.File"

extern char **environ;

/* nil, "<what> <path>: <strerror>", errno */
static int fail(lua_State *L, int e, const char *what, const char *path) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: %s", what, path, strerror(e));
    lua_pushinteger(L, e);
    return 3;
}

/* core.realpath(path) --> absolute path without symbolic links | nil, err */
static int l_realpath(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    eo_box *box = eo_box_new(L);
    char *r = realpath(path, NULL);
    if (!r) return fail(L, errno, "cannot resolve", path);
    eo_box_hold(box, r, free); /* freed even if the copy below raises */
    lua_pushstring(L, r);
    eo_box_release(box);
    return 1;
}

static int l_getpid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_geteuid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)geteuid());
    return 1;
}

/* core.isatty(fd) --> boolean (0 stdin, 1 stdout, 2 stderr) */
static int l_isatty(lua_State *L) {
    lua_Integer fd = luaL_checkinteger(L, 1);
    luaL_argcheck(L, fd >= 0 && fd <= INT_MAX, 1, "a file descriptor");
    lua_pushboolean(L, isatty((int)fd));
    return 1;
}

/* core.stat(path [, nofollow]) --> { type = "file"|"dir"|"link"|"other", mode = permission bits,
 * uid, gid, size, mtime } | nil, err */
static int l_stat(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int nofollow = lua_toboolean(L, 2);
    struct stat st;
    const char *type = "other";
    if ((nofollow ? lstat(path, &st) : stat(path, &st)) < 0) return fail(L, errno, "cannot stat", path);
    if (S_ISREG(st.st_mode)) type = "file";
    else if (S_ISDIR(st.st_mode)) type = "dir";
    else if (S_ISLNK(st.st_mode)) type = "link";
    lua_createtable(L, 0, 6);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)st.st_gid);
    lua_setfield(L, -2, "gid");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    return 1;
}

/* core.mkdtemp(prefix) --> a new folder prefix.XXXXXX, mode 0700 | nil, err */
static int l_mkdtemp(lua_State *L) {
    size_t n;
    const char *prefix = luaL_checklstring(L, 1, &n);
    char buf[PATH_MAX];
    if (n + 8 > sizeof buf) return fail(L, ENAMETOOLONG, "cannot create a folder at", prefix);
    memcpy(buf, prefix, n);
    memcpy(buf + n, ".XXXXXX", 8);
    if (!mkdtemp(buf)) return fail(L, errno, "cannot create a folder at", prefix);
    lua_pushstring(L, buf);
    return 1;
}

/* core.random(n) --> n bytes from the kernel's CSPRNG (raises if it cannot: a guessable state is worse) */
static int l_random(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char buf[256];
    size_t done = 0;
    luaL_argcheck(L, n > 0 && n <= (lua_Integer)sizeof buf, 1, "between 1 and 256 bytes");
    while (done < (size_t)n) {
        ssize_t r = getrandom(buf + done, (size_t)n - done, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return luaL_error(L, "exactonline: getrandom failed: %s", strerror(errno));
        }
        done += (size_t)r;
    }
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

/* core.truncate(path, size) --> true | nil, err: cut an export's temp file back to its last whole page
 * (a resumed export continues from there); never through a link, only a regular file of ours. */
static int l_truncate(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    struct stat st;
    int fd;
    luaL_argcheck(L, size >= 0, 2, "a size in bytes");
    fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return fail(L, errno, "cannot open", path);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (lua_Integer)st.st_size < size) {
        close(fd);
        return fail(L, EINVAL, "refusing to cut back (not a regular file of this user, or shorter)", path);
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        return fail(L, e, "cannot cut back", path);
    }
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- exactonline.File: a file we created ourselves (the export's temp file) ----
 * Lua's io.open cannot say O_EXCL|O_NOFOLLOW nor the mode, so this is the one write path of it. */
typedef struct {
    FILE *fp; /* NULL once closed */
} sys_file;

static sys_file *checkfile(lua_State *L) {
    sys_file *f = (sys_file *)luaL_checkudata(L, 1, FILE_MT);
    if (!f->fp) luaL_error(L, "attempt to use a closed file");
    return f;
}

static int new_file(lua_State *L, int fd, const char *path, const char *how) {
    sys_file *f = (sys_file *)lua_newuserdata(L, sizeof *f);
    f->fp = NULL; /* closed first: __gc copes with a half-built object */
    luaL_getmetatable(L, FILE_MT);
    lua_setmetatable(L, -2);
    f->fp = fdopen(fd, how);
    if (!f->fp) {
        int e = errno;
        close(fd);
        return fail(L, e, "cannot open", path);
    }
    return 1;
}

/* core.create_file(path [, mode]) --> File | nil, err: a new file only (O_EXCL), never through a
 * symbolic link (O_NOFOLLOW), with exactly mode (default 0600) whatever the umask. */
static int l_create_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_Integer mode = luaL_optinteger(L, 2, 0600);
    int fd;
    luaL_argcheck(L, mode >= 0 && mode <= 0777, 2, "a permission mode (0 to 0777)");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) return fail(L, errno, "cannot create", path);
    if (fchmod(fd, (mode_t)mode) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return fail(L, e, "cannot set the mode of", path);
    }
    return new_file(L, fd, path, "wb");
}

/* core.append_file(path) --> File | nil, err: an existing regular file of ours, not a link, written at its end. */
static int l_append_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return fail(L, errno, "cannot open", path);
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(L, e, "cannot open", path);
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        return fail(L, EPERM, "refusing to append to (not a regular file of this user)", path);
    }
    return new_file(L, fd, path, "ab");
}

/* file:write(s, ...) --> file | nil, err (strings and numbers, as io's write) */
static int file_write(lua_State *L) {
    sys_file *f = checkfile(L);
    int i, n = lua_gettop(L);
    for (i = 2; i <= n; i++) {
        size_t len;
        const char *s = luaL_checklstring(L, i, &len);
        if (len && fwrite(s, 1, len, f->fp) != len) return fail(L, errno, "cannot write", "the file");
    }
    lua_settop(L, 1);
    return 1;
}

/* file:flush([sync]) --> true | nil, err; with sync, fsync too (before a rename makes it the real file) */
static int file_flush(lua_State *L) {
    sys_file *f = checkfile(L);
    if (fflush(f->fp) != 0) return fail(L, errno, "cannot write", "the file");
    if (lua_toboolean(L, 2) && fsync(fileno(f->fp)) < 0) return fail(L, errno, "cannot sync", "the file");
    lua_pushboolean(L, 1);
    return 1;
}

/* file:close() --> true | nil, err; safe to call twice (also __gc and __close) */
static int file_close(lua_State *L) {
    sys_file *f = (sys_file *)luaL_checkudata(L, 1, FILE_MT);
    FILE *fp = f->fp;
    f->fp = NULL;
    if (fp && fclose(fp) != 0) return fail(L, errno, "cannot write", "the file");
    lua_pushboolean(L, 1);
    return 1;
}

static int file_tostring(lua_State *L) {
    sys_file *f = (sys_file *)luaL_checkudata(L, 1, FILE_MT);
    lua_pushfstring(L, "exactonline.File (%p%s)", (void *)f, f->fp ? "" : ", closed");
    return 1;
}

/* Is name "<base>.partial-<pid>.<hex>" (an export's temp file; older versions left "<base>.partial-<pid>")?
 * Sets *pid. */
static int partial_of(const char *name, const char *base, long *pid) {
    static const char tag[] = ".partial-";
    size_t bl = strlen(base);
    const char *p;
    char *end;
    if (strncmp(name, base, bl) != 0 || strncmp(name + bl, tag, sizeof tag - 1) != 0) return 0;
    p = name + bl + sizeof tag - 1;
    *pid = strtol(p, &end, 10);
    if (end == p || *pid <= 0) return 0;
    if (*end == '\0') return 1;
    if (*end != '.' || end[1] == '\0') return 0;
    for (end++; *end; end++)
        if (!isxdigit((unsigned char)*end)) return 0;
    return 1;
}

/* core.clean_partials(dir, base_name) --> number removed
 * Removes "<base_name>.partial-<pid>.<hex>" files whose writer is gone (kill(pid, 0) says ESRCH): what an
 * export killed with -9 leaves. A live writer's file is kept however old: an export may run for hours. */
static int l_clean_partials(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    const char *base = luaL_checkstring(L, 2);
    DIR *d = opendir(dir);
    struct dirent *de;
    int removed = 0;
    if (!d) {
        lua_pushinteger(L, 0);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        long pid;
        struct stat st;
        if (!partial_of(de->d_name, base, &pid)) continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) continue;
        if (st.st_uid != geteuid()) continue;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH && unlinkat(dirfd(d), de->d_name, 0) == 0) removed++;
    }
    closedir(d);
    lua_pushinteger(L, removed);
    return 1;
}

/* ---- child processes ---- */

/* Is NAME=value of envp[i] one of the names in the table at idx? */
static int unset_name(lua_State *L, int idx, const char *entry) {
    size_t i, n = (size_t)eo_rawlen(L, idx);
    const char *eq = strchr(entry, '=');
    size_t len = eq ? (size_t)(eq - entry) : strlen(entry);
    for (i = 1; i <= n; i++) {
        size_t nl;
        const char *name;
        int same;
        lua_rawgeti(L, idx, (lua_Integer)i);
        name = lua_tolstring(L, -1, &nl);
        same = name && nl == len && memcmp(name, entry, len) == 0;
        lua_pop(L, 1);
        if (same) return 1;
    }
    return 0;
}

/* core.spawn(argv, { unset = { "NAME", … }, quiet = bool, wait = bool }) --> pid | exit code (wait) | nil, err
 * posix_spawnp: no shell, so nothing in argv is ever parsed; the names in unset (secrets) are left out
 * of the child's environment; quiet sends its stdin/stdout/stderr to /dev/null. */
static int l_spawn(lua_State *L) {
    int n, i, envn = 0, rc, quiet, wait_for;
    const char **argv;
    const char **envp;
    char **e;
    pid_t pid;
    posix_spawn_file_actions_t fa;
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    else {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    lua_getfield(L, 2, "unset");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 3, LUA_TTABLE); /* index 3: the names to unset */
    lua_getfield(L, 2, "quiet");
    quiet = lua_toboolean(L, -1);
    lua_getfield(L, 2, "wait");
    wait_for = lua_toboolean(L, -1);
    lua_pop(L, 2);

    n = (int)eo_rawlen(L, 1);
    luaL_argcheck(L, n > 0, 1, "a program and its arguments");
    /* both arrays live in userdata, so a raising call below leaks nothing; each argument string is
     * kept on the stack above them while argv points into it */
    argv = (const char **)lua_newuserdata(L, sizeof(char *) * (size_t)(n + 1));
    luaL_checkstack(L, n + 4, "too many arguments");
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 1, "strings only");
        argv[i] = lua_tostring(L, -1);
    }
    argv[n] = NULL;
    for (e = environ; *e; e++) envn++;
    envp = (const char **)lua_newuserdata(L, sizeof(char *) * (size_t)(envn + 1));
    envn = 0;
    for (e = environ; *e; e++)
        if (!unset_name(L, 3, *e)) envp[envn++] = *e;
    envp[envn] = NULL;

    if (posix_spawn_file_actions_init(&fa) != 0) return fail(L, ENOMEM, "cannot start", argv[0]);
    if (quiet) {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    }
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, (char *const *)envp);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return fail(L, rc, "cannot start", argv[0]);
    if (wait_for) {
        int status;
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) return fail(L, errno, "cannot wait for", argv[0]);
        }
        lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

/* ---- SIGTERM / SIGHUP: a flag the CLI looks at between pages ----
 * A signal handler can reach nothing but a global; this one is process-wide by nature (signals are
 * per process), written only by the handler and read by core.signalled(). */
static volatile sig_atomic_t caught_signal = 0;

static void on_signal(int sig) {
    caught_signal = sig;
}

/* core.trap_signals() --> true: from now on SIGTERM and SIGHUP set the flag instead of killing us */
static int l_trap_signals(lua_State *L) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGHUP, &sa, NULL) < 0)
        return fail(L, errno, "cannot handle", "SIGTERM");
    lua_pushboolean(L, 1);
    return 1;
}

/* core.signalled() --> "SIGTERM" | "SIGHUP" | nil */
static int l_signalled(lua_State *L) {
    int sig = caught_signal;
    if (sig == SIGTERM) lua_pushliteral(L, "SIGTERM");
    else if (sig == SIGHUP) lua_pushliteral(L, "SIGHUP");
    else lua_pushnil(L);
    return 1;
}

/* core.user(name) --> { uid, gid, group = the name of gid } | nil, err (who nginx's workers run as) */
static int l_user(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    struct passwd pw, *pwp = NULL;
    struct group gr, *grp = NULL;
    char buf[4096];
    int e = getpwnam_r(name, &pw, buf, sizeof buf, &pwp);
    if (!pwp) {
        lua_pushnil(L);
        lua_pushfstring(L, "no user named %s%s%s", name, e ? ": " : "", e ? strerror(e) : "");
        return 2;
    }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)pw.pw_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)pw.pw_gid);
    lua_setfield(L, -2, "gid");
    if (getgrgid_r(pw.pw_gid, &gr, buf, sizeof buf, &grp) == 0 && grp) {
        lua_pushstring(L, gr.gr_name);
        lua_setfield(L, -2, "group");
    }
    return 1;
}

/* core.chown(path, uid, gid) --> true | nil, err (the path itself, never a symbolic link's target) */
static int l_chown(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_Integer uid = luaL_checkinteger(L, 2), gid = luaL_checkinteger(L, 3);
    luaL_argcheck(L, uid >= 0 && uid <= (lua_Integer)INT_MAX, 2, "a user id");
    luaL_argcheck(L, gid >= 0 && gid <= (lua_Integer)INT_MAX, 3, "a group id");
    if (lchown(path, (uid_t)uid, (gid_t)gid) < 0) return fail(L, errno, "cannot chown", path);
    lua_pushboolean(L, 1);
    return 1;
}

void eo_open_sys(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"realpath", l_realpath},       {"getpid", l_getpid},
        {"geteuid", l_geteuid},         {"isatty", l_isatty},
        {"stat", l_stat},
        {"mkdtemp", l_mkdtemp},         {"random", l_random},
        {"truncate", l_truncate},       {"create_file", l_create_file},
        {"append_file", l_append_file}, {"clean_partials", l_clean_partials},
        {"spawn", l_spawn},             {"trap_signals", l_trap_signals},
        {"signalled", l_signalled},     {"user", l_user},
        {"chown", l_chown},             {NULL, NULL}};
    static const luaL_Reg file_methods[] = {
        {"write", file_write}, {"flush", file_flush}, {"close", file_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, FILE_MT)) {
        eo_newlib(L, file_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, file_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, file_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, file_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, fns, 0);
}
