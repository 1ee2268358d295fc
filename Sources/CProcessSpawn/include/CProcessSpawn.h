#ifndef CPROCESSSPAWN_H
#define CPROCESSSPAWN_H

#include <sys/types.h>

/// Spawns `path` in a new session (so it leads its own process group) with stdin/stdout/stderr
/// on the given descriptors, in `cwd`, with every other descriptor closed and every signal
/// disposition and the signal mask reset. `death_signal` > 0 is sent to the child when this
/// process dies, however it dies (PR_SET_PDEATHSIG). `child_umask` >= 0 gives the child that umask (the
/// operator's, while the runner itself keeps 077); -1 inherits the runner's. Returns 0 or an
/// errno value (also a failed exec: a missing program, a missing cwd); never forks a shell.
/// `cgroup_tasks_a`/`_b` (or NULL): the v1 cgroups' `tasks` files the child joins before anything else (a run's cgroups);
/// `rlimit_data` > 0 sets RLIMIT_DATA; failing either fails the spawn.
int cps_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
              int stdin_fd, int stdout_fd, int stderr_fd, int child_umask, int death_signal,
              const char *cgroup_tasks_a, const char *cgroup_tasks_b, long long rlimit_data);

/// Sets the process umask and returns the previous one.
int cps_set_umask(int mask);

/// Blocks until process `pid` — not necessarily a child — has ended, through a pidfd (polled every 50 ms where
/// pidfds are missing). Returns at once when `pid` is gone or is no longer the process that started at
/// `start_time` (field 22 of /proc/PID/stat: a reused pid is not waited on).
void cps_wait_foreign_exit(pid_t pid, unsigned long long start_time);

/// A pidfd for `pid` (close it), -1 when the process is gone or — `start_time` > 0 — is no longer the process that
/// started then (field 22 of /proc/PID/stat), -2 when no pidfd can be had (an old kernel, no descriptor left).
int cps_pidfd_open(pid_t pid, unsigned long long start_time);

/// A new epoll instance (close-on-exec), or -1.
int cps_loop_create(void);

/// A new non-blocking eventfd (close-on-exec) to wake a loop with, or -1.
int cps_wake_create(void);

/// Watches `fd` for input on epoll instance `epfd`, reported as `tag`. 0 or an errno value.
int cps_loop_add(int epfd, int fd, unsigned long long tag);

/// Stops watching `fd`. 0 or an errno value.
int cps_loop_remove(int epfd, int fd);

/// Waits up to `timeout_ms` (-1: no limit) for input; stores the ready tags (at most `capacity`, 64) and returns how
/// many, 0 on a timeout or a signal, -errno on failure.
int cps_loop_wait(int epfd, unsigned long long *tags, int capacity, int timeout_ms);

/// Drains the non-blocking inotify descriptor `fd` and stores each watch that had an event once (-1: the queue
/// overflowed, events were lost). Returns how many; a negative count: `watches` was too small, every watch must be
/// looked at.
int cps_inotify_read(int fd, int *watches, int capacity);

#endif
