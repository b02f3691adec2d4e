/* File helpers for the token file store: atomic replace, private reads, mkdir -p,
 * flock with a timeout, and clean-up of temp files a crash left behind.
 * Errors are store error objects; the old file is never touched by a failed write. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include "eo.h"

#define LOCK_MT "exactonline.FileLock"
#define TMP_TAG ".tmp."

/* What a person can do about an errno, for the hint. */
static const char *errno_hint(int e) {
    switch (e) {
    case ENOSPC: return "the disk is full: free some space and try again; the old token file is untouched";
    case EDQUOT: return "the disk quota is exhausted: free some space and try again; the old token file is untouched";
    case EFBIG:  return "the file size limit (ulimit -f) was reached: raise it; the old token file is untouched";
    case EROFS:  return "the file system is mounted read-only: choose a token path on a writable disk";
    case EACCES:
    case EPERM:  return "no permission: the token folder must be writable by this user (chmod 700 on the folder)";
    case ENOENT: return "the folder does not exist; check the path";
    case ENOTDIR: return "a part of the path is a file, not a folder; check the path";
    case ELOOP:  return "the token file is a symbolic link: point the store at the real file "
                        "(it is replaced atomically, which would replace the link)";
    default:     return "check the path and the folder's permissions";
    }
}

static const char *errno_name(int e) {
    switch (e) {
    case ENOSPC: return "ENOSPC";   case EDQUOT: return "EDQUOT";   case EFBIG: return "EFBIG";
    case EROFS: return "EROFS";     case EACCES: return "EACCES";   case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";   case ENOTDIR: return "ENOTDIR"; case ELOOP: return "ELOOP";
    case EIO: return "EIO";         case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return NULL;
    }
}

/* A file mode argument: a whole number from 0 to 07777 (optional). */
static mode_t opt_mode(lua_State *L, int idx, mode_t dflt) {
    lua_Integer m;
    if (lua_isnoneornil(L, idx)) return dflt;
    m = eo_optwhole(L, idx, 0, 07777, -1);
    luaL_argcheck(L, m >= 0, idx, "a file mode from 0 to 07777");
    return (mode_t)m;
}

/* An optional number of seconds from 0 to max (NaN would make a wait loop forever). */
static double opt_seconds(lua_State *L, int idx, double dflt, double max) {
    double v = luaL_optnumber(L, idx, dflt);
    if (!eo_within(v, 0, max)) luaL_argerror(L, idx, lua_pushfstring(L, "seconds from 0 to %f", max));
    return v;
}

/* nil, err where message = "<what> <path>: <strerror>" and code = the errno's name. */
static int fail_errno(lua_State *L, int e, const char *what, const char *path) {
    char code[32];
    const char *msg;
    if (errno_name(e)) snprintf(code, sizeof code, "%s", errno_name(e));
    else snprintf(code, sizeof code, "errno %d", e);
    msg = lua_pushfstring(L, "%s %s: %s", what, path, strerror(e));
    eo_fail(L, "store", 0, code, msg, NULL, errno_hint(e));
    lua_remove(L, -3);
    return 2;
}

/* Push the name of user uid ("nobody"), or "uid N" when it has none. */
static const char *push_user(lua_State *L, uid_t uid) {
    struct passwd pw, *found = NULL;
    char buf[2048];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found && found->pw_name[0])
        lua_pushstring(L, found->pw_name);
    else
        lua_pushfstring(L, "uid %d", (int)uid);
    return lua_tostring(L, -1);
}

/* nil, err: path belongs to another user. A file someone else owns could be swapped or read by them,
 * and a file this user cannot replace would break the next refresh: say whose it is and what to do. */
static int fail_owner(lua_State *L, const char *path, const char *what, uid_t owner) {
    int base = lua_gettop(L);
    const char *them = push_user(L, owner), *me = push_user(L, geteuid());
    lua_pushfstring(L, "%s %s is owned by %s, not by %s (the user this process runs as); refusing to use it",
                    what, path, them, me);
    lua_pushfstring(L, "chown %s %s (or run this as %s)", me, path, them);
    eo_fail(L, "store", 0, "owner", lua_tostring(L, -2), NULL, lua_tostring(L, -1));
    lua_insert(L, base + 1); /* err */
    lua_insert(L, base + 1); /* nil, err */
    lua_settop(L, base + 2);
    return 2;
}

/* After open(path) failed with e: an owner error when the file is someone else's, else errno's. */
static int fail_open(lua_State *L, int e, const char *what, const char *path, const char *noun) {
    struct stat st;
    if ((e == EACCES || e == EPERM) && lstat(path, &st) == 0 && st.st_uid != geteuid())
        return fail_owner(L, path, noun, st.st_uid);
    return fail_errno(L, e, what, path);
}

static int fsync_dir_of(const char *path) {
    /* the folder is the part before the last '/', or "." */
    const char *slash = strrchr(path, '/');
    char buf[4096];
    int fd, rc;
    if (!slash) {
        strcpy(buf, ".");
    } else if (slash == path) {
        strcpy(buf, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof buf) return ENAMETOOLONG;
        memcpy(buf, path, n);
        buf[n] = '\0';
    }
    fd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    rc = fsync(fd) < 0 ? errno : 0;
    close(fd);
    /* some file systems refuse fsync on a directory; that is not a failed write */
    return (rc == EINVAL || rc == EBADF) ? 0 : rc;
}

static unsigned long random_tag(void) {
    unsigned long r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (unsigned long)ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20) ^ (unsigned long)(size_t)&ts;
    }
    return r & 0xffffffffUL;
}

/* core.atomic_write(path, data [, mode]) --> true | nil, err
 * Temp file .<name>.tmp.<pid>.<rand> in the same folder (O_EXCL, mode 0600), write all, fsync,
 * rename over path, fsync the folder. On failure the temp is unlinked and path is untouched. */
static int l_atomic_write(lua_State *L) {
    size_t len, done = 0;
    const char *path = luaL_checkstring(L, 1);
    const char *data = luaL_checklstring(L, 2, &len);
    mode_t mode = opt_mode(L, 3, 0600);
    const char *slash = strrchr(path, '/');
    const char *tmp = NULL;
    int fd = -1, e, tries;

    if (path[0] == '\0' || (slash && slash[1] == '\0'))
        return luaL_argerror(L, 1, "a file path, not a folder");
    for (tries = 0; tries < 16; tries++) {
        lua_settop(L, 3);
        {
            char name[4200];
            int n;
            if (slash)
                n = snprintf(name, sizeof name, "%.*s/.%s" TMP_TAG "%ld.%08lx", (int)(slash - path), path,
                             slash + 1, (long)getpid(), random_tag());
            else
                n = snprintf(name, sizeof name, "." "%s" TMP_TAG "%ld.%08lx", path, (long)getpid(),
                             random_tag());
            if (n < 0 || (size_t)n >= sizeof name) return fail_errno(L, ENAMETOOLONG, "cannot write", path);
            lua_pushstring(L, name); /* kept at index 4 until the end */
            tmp = lua_tostring(L, -1);
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode & 0777);
        if (fd >= 0 || errno != EEXIST) break;
    }
    if (fd < 0) return fail_errno(L, errno, "cannot create a temp file beside", path);
    /* the umask must not widen nor narrow what we asked for */
    if (fchmod(fd, mode & 0777) < 0) goto fail;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            goto fail;
        }
        if (w == 0) {
            errno = ENOSPC;
            goto fail;
        }
        done += (size_t)w;
    }
    if (fsync(fd) < 0) goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0) goto fail;
    e = fsync_dir_of(path);
    if (e) return fail_errno(L, e, "wrote but could not sync the folder of", path);
    lua_pushboolean(L, 1);
    return 1;
fail:
    e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    return fail_errno(L, e, "cannot write", path);
}

/* core.read_private(path) --> contents | false (no such file) | nil, err
 * Refuses directories, symbolic links, non-regular files and files readable by group or others. */
static int l_read_private(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    luaL_Buffer b;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) {
            lua_pushboolean(L, 0);
            return 1;
        }
        if (e == EISDIR) goto isdir;
        return fail_open(L, e, "cannot read", path, "the token file");
    }
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail_errno(L, e, "cannot read", path);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        goto isdir;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        lua_pushfstring(L, "%s is not a regular file", path);
        return eo_fail(L, "store", 0, "not_a_file", lua_tostring(L, -1), NULL,
                       "point the store at a regular file (it will be created when missing)");
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return fail_owner(L, path, "the token file", st.st_uid);
    }
    if (st.st_mode & 077) {
        char mode[8];
        close(fd);
        snprintf(mode, sizeof mode, "%03o", (unsigned)(st.st_mode & 0777));
        lua_pushfstring(L, "%s can be read or written by other users (mode %s); refusing to use it", path, mode);
        lua_pushfstring(L, "chmod 600 %s (and consider the tokens in it leaked: log in again)", path);
        return eo_fail(L, "store", 0, "file_mode", lua_tostring(L, -2), NULL, lua_tostring(L, -1));
    }
    luaL_buffinit(L, &b);
    for (;;) {
        char *p = luaL_prepbuffer(&b);
        ssize_t r = read(fd, p, LUAL_BUFFERSIZE);
        if (r < 0) {
            int e = errno;
            if (e == EINTR) continue;
            close(fd);
            return fail_errno(L, e, "cannot read", path);
        }
        if (r == 0) break;
        luaL_addsize(&b, (size_t)r);
    }
    close(fd);
    luaL_pushresult(&b);
    return 1;
isdir:
    lua_pushfstring(L, "%s is a folder, not a token file", path);
    lua_pushfstring(L, "give the store a file path such as %s/tokens.json", path);
    return eo_fail(L, "store", 0, "is_directory", lua_tostring(L, -2), NULL, lua_tostring(L, -1));
}

/* core.mkdir_p(path [, mode]) --> true | nil, err; missing folders are created with mode (0700). */
static int l_mkdir_p(lua_State *L) {
    size_t len, i;
    const char *path = luaL_checklstring(L, 1, &len);
    mode_t mode = opt_mode(L, 2, 0700);
    char buf[4096];
    struct stat st;
    if (len == 0) return luaL_argerror(L, 1, "empty path");
    if (len >= sizeof buf) return fail_errno(L, ENAMETOOLONG, "cannot create folder", path);
    memcpy(buf, path, len + 1);
    for (i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        buf[i] = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST) return fail_errno(L, errno, "cannot create folder", buf);
        if (stat(buf, &st) < 0) return fail_errno(L, errno, "cannot create folder", buf);
        if (!S_ISDIR(st.st_mode)) return fail_errno(L, ENOTDIR, "cannot create folder", buf);
        if (i < len) buf[i] = '/';
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* The lock: an fd holding flock(LOCK_EX) on a sidecar file. */
typedef struct {
    int fd; /* -1 once released */
} file_lock;

static int lock_release(lua_State *L) {
    file_lock *lk = (file_lock *)luaL_checkudata(L, 1, LOCK_MT);
    if (lk->fd >= 0) {
        flock(lk->fd, LOCK_UN);
        close(lk->fd);
        lk->fd = -1;
    }
    return 0;
}

static int lock_held(lua_State *L) {
    file_lock *lk = (file_lock *)luaL_checkudata(L, 1, LOCK_MT);
    lua_pushboolean(L, lk->fd >= 0);
    return 1;
}

static int lock_tostring(lua_State *L) {
    file_lock *lk = (file_lock *)luaL_checkudata(L, 1, LOCK_MT);
    lua_pushfstring(L, "exactonline.FileLock (%p%s)", (void *)lk, lk->fd >= 0 ? "" : ", released");
    return 1;
}

/* core.flock(path, timeout_seconds) --> lock | nil, err
 * Polls LOCK_EX|LOCK_NB with short sleeps; a process that dies releases its lock with its fd. */
static int l_flock(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    double timeout = opt_seconds(L, 2, 30, EO_MAX_SECONDS);
    file_lock *lk;
    struct timespec start, now, nap = {0, 5 * 1000 * 1000};
    lk = (file_lock *)lua_newuserdata(L, sizeof *lk);
    lk->fd = -1; /* "released" first, so __gc copes with a half-built lock */
    luaL_getmetatable(L, LOCK_MT);
    lua_setmetatable(L, -2);
    lk->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (lk->fd < 0) return fail_open(L, errno, "cannot open the lock file", path, "the lock file");
    {
        /* someone else's lock file could be held (or removed) by them at will */
        struct stat st;
        int bad = fstat(lk->fd, &st) < 0 ? errno : 0;
        if (!bad && !S_ISREG(st.st_mode)) bad = EINVAL;
        if (bad || st.st_uid != geteuid()) {
            close(lk->fd);
            lk->fd = -1;
            if (bad == EINVAL) {
                lua_pushfstring(L, "the lock file %s is not a regular file", path);
                return eo_fail(L, "store", 0, "not_a_file", lua_tostring(L, -1), NULL,
                               "remove it; the store creates the lock file itself");
            }
            if (bad) return fail_errno(L, bad, "cannot open the lock file", path);
            return fail_owner(L, path, "the lock file", st.st_uid);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        double waited;
        if (flock(lk->fd, LOCK_EX | LOCK_NB) == 0) return 1;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int e = errno;
            close(lk->fd);
            lk->fd = -1;
            return fail_errno(L, e, "cannot lock", path);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        waited = (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
        if (waited >= timeout) break;
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 50 * 1000 * 1000) nap.tv_nsec += 5 * 1000 * 1000;
    }
    close(lk->fd);
    lk->fd = -1;
    lua_pushfstring(L, "another process holds the lock %s (waited %f s)", path, (double)timeout);
    return eo_fail(L, "store", 0, "lock_timeout", lua_tostring(L, -1), NULL,
                   "another process is refreshing the tokens or hangs while holding the lock; "
                   "retry, or find the process with: fuser -v <lock file>");
}

/* core.writable(folder) --> true | nil, err: may this process (its effective user) create files in it? */
static int l_writable(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) < 0)
        return fail_errno(L, errno, "cannot write in the folder", path);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.user_name([uid]) --> "name" (or "uid N"): the effective user by default. */
static int l_user_name(lua_State *L) {
    lua_Integer uid = luaL_optinteger(L, 1, (lua_Integer)geteuid());
    luaL_argcheck(L, uid >= 0 && uid <= (lua_Integer)0x7fffffff, 1, "a user id");
    push_user(L, (uid_t)uid);
    return 1;
}

/* Is name ".<base>.tmp.<pid>.<hex>"? Sets *pid. */
static int temp_of(const char *name, const char *base, long *pid) {
    size_t bl = strlen(base), tl = strlen(TMP_TAG);
    const char *p;
    char *end;
    if (name[0] != '.' || strncmp(name + 1, base, bl) != 0) return 0;
    p = name + 1 + bl;
    if (strncmp(p, TMP_TAG, tl) != 0) return 0;
    p += tl;
    *pid = strtol(p, &end, 10);
    if (end == p || *end != '.' || *pid <= 0) return 0;
    return 1;
}

/* core.clean_temps(dir, base_name [, max_age_seconds]) --> number removed
 * Removes temp files of base_name whose writer is gone (kill(pid, 0) says ESRCH)
 * or that are older than max_age (default 600 s; a live write never takes that long). */
static int l_clean_temps(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    const char *base = luaL_checkstring(L, 2);
    double max_age = opt_seconds(L, 3, 600, 1e10);
    DIR *d = opendir(dir);
    struct dirent *de;
    int removed = 0;
    time_t now = time(NULL);
    if (!d) {
        lua_pushinteger(L, 0);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        long pid;
        struct stat st;
        int stale;
        if (!temp_of(de->d_name, base, &pid)) continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) continue;
        stale = (kill((pid_t)pid, 0) < 0 && errno == ESRCH) || (double)(now - st.st_mtime) > max_age;
        if (stale && unlinkat(dirfd(d), de->d_name, 0) == 0) removed++;
    }
    closedir(d);
    lua_pushinteger(L, removed);
    return 1;
}

void eo_open_fileio(lua_State *L) {
    static const luaL_Reg fns[] = {{"atomic_write", l_atomic_write}, {"read_private", l_read_private},
                                   {"mkdir_p", l_mkdir_p},           {"flock", l_flock},
                                   {"clean_temps", l_clean_temps},   {"writable", l_writable},
                                   {"user_name", l_user_name},       {NULL, NULL}};
    static const luaL_Reg lock_methods[] = {{"unlock", lock_release}, {"held", lock_held}, {NULL, NULL}};
    if (luaL_newmetatable(L, LOCK_MT)) {
        eo_newlib(L, lock_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, lock_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, lock_release);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, lock_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, fns, 0);
}
