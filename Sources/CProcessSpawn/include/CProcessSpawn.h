#ifndef CPROCESSSPAWN_H
#define CPROCESSSPAWN_H

#include <sys/types.h>

/// Spawns `path` in a new session (so it leads its own process group) with stdin/stdout/stderr
/// on the given descriptors, in `cwd`, with every other descriptor closed and every signal
/// disposition and the signal mask reset. `death_signal` > 0 is sent to the child when this
/// process dies, however it dies (PR_SET_PDEATHSIG). `child_umask` >= 0 gives the child that umask (the
/// operator's, while the runner itself keeps 077); -1 inherits the runner's. Returns 0 or an
/// errno value (also a failed exec: a missing program, a missing cwd); never forks a shell.
int cps_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
              int stdin_fd, int stdout_fd, int stderr_fd, int child_umask, int death_signal);

/// Sets the process umask and returns the previous one.
int cps_set_umask(int mask);

#endif
