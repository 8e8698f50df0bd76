#include "proxy/daemon/privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "proxy/core/error.h"
#include "proxy/core/log.h"
#include "proxy/mtasts/store.h"

/* The MTA-STS store is opened by root before the drop (runtime_new), so the state
 * directory and the sqlite files sqlite made there are root's; after the drop the
 * daemon must still write them (WAL checkpoints, a reload reopening the store). Only
 * the files we create are touched, by name, and never through a symlink: a state_dir
 * pointed at a shared directory must not hand its other files to the user. */
static const char *const state_suffixes[] = {"", "-wal", "-shm", "-journal"};

static int chown_state(const struct config *cfg, uid_t uid, gid_t gid, char *err,
                       size_t errlen) {
  int ret = 0;
  int dfd = open(cfg->state_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) {
    if (errno == ENOENT) /* MTA-STS off: nothing was created */
      return 0;
    snprintf(err, errlen, "state_dir %s: %s", cfg->state_dir, strerror(errno));
    return SP_E_IO;
  }
  struct stat st, root;
  if (fstat(dfd, &st) == 0 && stat("/", &root) == 0 && st.st_dev == root.st_dev &&
      st.st_ino == root.st_ino) {
    snprintf(err, errlen, "state_dir %s: refusing to give / to %s", cfg->state_dir,
             cfg->user);
    ret = SP_E_CONFIG;
    goto out;
  }
  if (fchown(dfd, uid, gid) < 0) {
    snprintf(err, errlen, "state_dir %s: chown to %s: %s", cfg->state_dir, cfg->user,
             strerror(errno));
    ret = SP_E_IO;
    goto out;
  }
  char path[STORE_PATH_MAX];
  store_path(cfg->state_dir, path, sizeof path);
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  for (size_t i = 0; i < sizeof state_suffixes / sizeof state_suffixes[0]; i++) {
    char name[256];
    snprintf(name, sizeof name, "%s%s", base, state_suffixes[i]);
    struct stat fs;
    if (fstatat(dfd, name, &fs, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT)
        continue;
      snprintf(err, errlen, "%s/%s: %s", cfg->state_dir, name, strerror(errno));
      ret = SP_E_IO;
      goto out;
    }
    if (!S_ISREG(fs.st_mode))
      continue;
    if (fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
      snprintf(err, errlen, "%s/%s: chown to %s: %s", cfg->state_dir, name, cfg->user,
               strerror(errno));
      ret = SP_E_IO;
      goto out;
    }
  }
out:
  close(dfd);
  return ret;
}

/* Order matters: supplementary groups and the gid need root, so they go first; the
 * uid last. setres*id sets real, effective and saved ids at once, so there is no
 * saved root id to return to. */
static int switch_ids(const char *user, uid_t uid, gid_t gid, char *err,
                      size_t errlen) {
  if (initgroups(user, gid) < 0) {
    snprintf(err, errlen, "user %s: initgroups: %s", user, strerror(errno));
    return SP_E_IO;
  }
  if (setresgid(gid, gid, gid) < 0) {
    snprintf(err, errlen, "user %s: setgid(%u): %s", user, (unsigned)gid,
             strerror(errno));
    return SP_E_IO;
  }
  if (setresuid(uid, uid, uid) < 0) {
    snprintf(err, errlen, "user %s: setuid(%u): %s", user, (unsigned)uid,
             strerror(errno));
    return SP_E_IO;
  }
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != uid ||
      eu != uid || su != uid || rg != gid || eg != gid || sg != gid) {
    snprintf(err, errlen, "user %s: ids not switched to uid %u gid %u", user,
             (unsigned)uid, (unsigned)gid);
    return SP_E_IO;
  }
  /* The point of the exercise: root must be gone for good. */
  if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0) {
    snprintf(err, errlen, "user %s: root could be regained after the drop", user);
    return SP_E_IO;
  }
  return 0;
}

int privileges_drop(const struct config *cfg, char *err, size_t errlen) {
  if (cfg->user[0] == '\0')
    return 0;
  if (geteuid() != 0) {
    log_msg(LOG_WARNING, NULL, "user %s ignored: not started as root", cfg->user);
    return 0;
  }
  errno = 0;
  struct passwd *pw = getpwnam(cfg->user);
  if (!pw) {
    /* getpwnam(3): "not found" may come as 0, ENOENT, ESRCH, EBADF or EPERM. */
    bool lookup_failed = errno == EIO || errno == EINTR || errno == EMFILE ||
                         errno == ENFILE || errno == ENOMEM || errno == ERANGE;
    snprintf(err, errlen, "user %s: %s", cfg->user,
             lookup_failed ? strerror(errno) : "no such user");
    return lookup_failed ? SP_E_IO : SP_E_CONFIG;
  }
  /* pw points into static storage that initgroups' NSS calls may reuse. */
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  if (uid == 0) {
    snprintf(err, errlen, "user %s: has uid 0; name an unprivileged user", cfg->user);
    return SP_E_CONFIG;
  }
  int rc = chown_state(cfg, uid, gid, err, errlen);
  if (rc == 0)
    rc = switch_ids(cfg->user, uid, gid, err, errlen);
  if (rc == 0)
    log_msg(LOG_INFO, NULL, "running as user %s (uid=%u gid=%u)", cfg->user,
            (unsigned)uid, (unsigned)gid);
  return rc;
}
