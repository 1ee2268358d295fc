#define _GNU_SOURCE
#include "CProcessSpawn.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>

static int spawn_here(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                      int stdin_fd, int stdout_fd, int stderr_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attributes);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
    if (rc == 0 && cwd != NULL) rc = posix_spawn_file_actions_addchdir_np(&actions, cwd);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);

    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig = 1; sig < 32; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) sigaddset(&defaults, sig);
    }
    sigset_t mask;
    sigemptyset(&mask);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attributes, &defaults);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attributes, &mask);
    if (rc == 0) rc = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    if (rc == 0) rc = posix_spawn(pid, path, &actions, &attributes, argv, envp);

    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

struct spawn_call {
    pid_t *pid;
    const char *path;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    int stdin_fd, stdout_fd, stderr_fd;
    mode_t child_umask;
    int rc;
};

/* On its own thread: a private copy of the filesystem attributes (CLONE_FS), so the umask set here is this
   thread's alone and the child inherits it; the runner's other threads keep theirs. */
static pthread_mutex_t shared_umask_lock = PTHREAD_MUTEX_INITIALIZER;

static void *spawn_with_umask(void *argument) {
    struct spawn_call *call = argument;
    if (unshare(CLONE_FS) == 0) {
        umask(call->child_umask);
        call->rc = spawn_here(call->pid, call->path, call->argv, call->envp, call->cwd, call->stdin_fd, call->stdout_fd, call->stderr_fd);
        return NULL;
    }
    /* Container seccomp profiles (RuntimeDefault without CAP_SYS_ADMIN) refuse unshare(CLONE_FS). Then the umask is
       swapped process-wide for the spawn alone, one spawn at a time; the runner opens its private files with explicit
       0600/0700 modes, so the brief window cannot expose them. */
    pthread_mutex_lock(&shared_umask_lock);
    mode_t previous = umask(call->child_umask);
    call->rc = spawn_here(call->pid, call->path, call->argv, call->envp, call->cwd, call->stdin_fd, call->stdout_fd, call->stderr_fd);
    umask(previous);
    pthread_mutex_unlock(&shared_umask_lock);
    return NULL;
}

int cps_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
              int stdin_fd, int stdout_fd, int stderr_fd, int child_umask) {
    if (child_umask < 0) return spawn_here(pid, path, argv, envp, cwd, stdin_fd, stdout_fd, stderr_fd);
    struct spawn_call call = {pid, path, argv, envp, cwd, stdin_fd, stdout_fd, stderr_fd, (mode_t)child_umask, 0};
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, spawn_with_umask, &call);
    if (rc != 0) return rc;
    pthread_join(thread, NULL);
    return call.rc;
}

int cps_set_umask(int mask) { return (int)umask((mode_t)mask); }
