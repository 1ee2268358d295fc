/* dispatch-monitor: the small per-run process that holds one agent attempt (CONTRACT §7).

   dispatch-monitor --record PREFIX --allowed-ms A --slack-ms S --grace-ms G --lease-ms L --runner-pid P -- PROGRAM [ARG...]

   `serve` starts it (in a session of its own, stdin/stdout/stderr already the attempt's files, the agent's
   environment) instead of starting bwrap itself. The monitor:
   - writes PREFIX.monitor ({"pid","startTime","bootId","startedAtMs","startedAtBootMs","allowedMs"}) before the
     agent starts, so a new `serve` can find it by pid, start time and boot; it does not start the agent when
     PREFIX.abandoned exists (the run was ended as lost meanwhile), and ends it when that appears while orphaned;
   - keeps itself out of the OOM killer's choice (oom_score_adj -1000 where it may; the agent gets 0 back);
   - starts PROGRAM (bwrap, whose namespace init stays in the group) in the monitor's own process group, so
     `serve`'s group signals reach the agent as before;
   - ignores SIGTERM/SIGINT/SIGHUP (they are for the agent: the monitor must outlive it to record its end);
   - ends the agent itself when the run's deadline (A + S ms after its start) passes, or when its runner is gone
     and nobody adopted the run (PREFIX.owner names a live process by pid and start time) within L ms:
     SIGTERM to the group, SIGKILL to every member after G ms (the namespace dies with its init), and ends what
     the agent left in its group once it has exited while no runner holds the run;
   - writes PREFIX.status ({"ending","exitCode","signal","startedAtMs","endedAtMs"}) when the agent has ended,
     and exits as the agent did (the same code, or the same signal), so a `serve` that is its parent sees
     exactly what it would have seen without it.
   Files are written whole and renamed into place, mode 0600. One thread, plain system calls only.

   dispatch-monitor --guard --runner-pid P -- PROGRAM [ARG...]

   `dispatch run` and the job-runner (whose agents die with them) start it in front of bwrap: bwrap's
   --die-with-parent arms the namespace's init only once the namespace is set up, so a runner killed during those
   milliseconds would leave the namespace and its agent running with nobody to end them. The guard is started with
   SIGUSR2 as its parent-death signal; when the runner dies (or is found gone), it SIGKILLs every member of its
   group — bwrap and the namespace's init among them, armed or not — and exits. No files; otherwise it behaves as
   the monitor does (own group, ignores SIGTERM/SIGINT/SIGHUP, exits as the agent did). */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum ending { ENDING_NONE, ENDING_TIMED_OUT, ENDING_RUNNER_LOST };

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Time since boot, suspend included: a deadline does not stretch across a sleep of the machine. */
static long long monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Field 22 of /proc/PID/stat (start time in clock ticks since boot), or 0 when the process is gone or a zombie. */
static unsigned long long start_time(pid_t pid) {
    char path[64], buffer[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return 0;
    buffer[n] = 0;
    char *p = strrchr(buffer, ')');
    if (p == NULL) return 0;
    p += 2; /* the state */
    if (*p == 'Z' || *p == 'X') return 0;
    for (int field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL) p++;
    }
    return p == NULL ? 0 : strtoull(p, NULL, 10);
}

/* Sends `sig` to every live member of the monitor's process group but the monitor itself (the group's leader):
   bwrap, the namespace's init and whatever of the agent did not leave the group. Returns how many it found. */
static int signal_group(int sig) {
    pid_t me = getpid(), group = getpgrp();
    int found = 0;
    DIR *proc = opendir("/proc");
    if (proc == NULL) return 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end != 0 || pid <= 0 || pid == me) continue;
        char path[64], buffer[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buffer, sizeof buffer - 1);
        close(fd);
        if (n <= 0) continue;
        buffer[n] = 0;
        char *p = strrchr(buffer, ')');
        char state = 0;
        int ppid = 0, pgrp = 0;
        if (p == NULL || sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
        if (pgrp != group || state == 'Z' || state == 'X') continue;
        found++;
        kill((pid_t)pid, sig);
    }
    closedir(proc);
    return found;
}

/* Ends the group but the monitor: SIGTERM, up to `grace_ms` to go, then SIGKILL until nobody is left. */
static void end_group(long long grace_ms) {
    if (signal_group(SIGTERM) == 0) return;
    long long until = monotonic_ms() + grace_ms;
    while (monotonic_ms() < until) {
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (signal_group(0) == 0) return;
    }
    for (int round = 0; round < 100 && signal_group(SIGKILL) > 0; round++) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
}

/* Writes `text` to `path` whole: a temporary file beside it, then a rename. */
static int write_file(const char *path, const char *text) {
    char temporary[4096];
    if (snprintf(temporary, sizeof temporary, "%s.tmp", path) >= (int)sizeof temporary) return -1;
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return -1;
    size_t length = strlen(text), done = 0;
    while (done < length) {
        ssize_t n = write(fd, text + done, length - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            close(fd);
            unlink(temporary);
            return -1;
        }
        done += (size_t)n;
    }
    close(fd);
    return rename(temporary, path);
}

/* Writes a small integer to a /proc file (an oom_score_adj); failures are ignored (an unprivileged monitor
   cannot lower its own). */
static void write_proc(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t ignored = write(fd, value, strlen(value));
    (void)ignored;
    close(fd);
}

/* The kernel's boot id, without its newline ("" when unreadable): a record from another boot names nothing here. */
static void boot_id(char *out, size_t size) {
    out[0] = 0;
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    if (n <= 0) n = 0;
    out[n] = 0;
    for (ssize_t i = 0; i < n; i++) {
        if (out[i] == '\n' || out[i] == '"' || out[i] == '\\') out[i] = 0;
    }
}

/* Whether PREFIX.owner names a live process ("PID STARTTIME"): a runner that adopted the run. */
static int adopted(const char *owner_path) {
    char buffer[128];
    int fd = open(owner_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (n <= 0) return 0;
    buffer[n] = 0;
    int pid = 0;
    unsigned long long start = 0;
    if (sscanf(buffer, "%d %llu", &pid, &start) != 2 || pid <= 0) return 0;
    return start != 0 && start_time(pid) == start;
}

struct options {
    const char *record;
    long long allowed_ms, slack_ms, grace_ms, lease_ms;
    pid_t runner;
    char **command;
    const char *uid_lease;
};

static int parse(int argc, char **argv, struct options *options) {
    memset(options, 0, sizeof *options);
    options->grace_ms = 5000;
    options->lease_ms = 30000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            if (i + 1 >= argc) return -1;
            options->command = argv + i + 1;
            return options->record == NULL || options->allowed_ms <= 0 ? -1 : 0;
        }
        if (i + 1 >= argc) return -1;
        const char *name = argv[i], *value = argv[++i];
        if (strcmp(name, "--record") == 0) options->record = value;
        else if (strcmp(name, "--allowed-ms") == 0) options->allowed_ms = atoll(value);
        else if (strcmp(name, "--slack-ms") == 0) options->slack_ms = atoll(value);
        else if (strcmp(name, "--grace-ms") == 0) options->grace_ms = atoll(value);
        else if (strcmp(name, "--lease-ms") == 0) options->lease_ms = atoll(value);
        else if (strcmp(name, "--runner-pid") == 0) options->runner = (pid_t)atoi(value);
        else if (strcmp(name, "--uid-lease") == 0) options->uid_lease = value;
        else return -1;
    }
    return -1;
}

static void reset_signals(void) {
    struct sigaction dfl = {0};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < 65; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Exits as the agent did: its exit code, or death by its signal. */
static void mirror(int status) {
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
    reset_signals();
    prctl(PR_SET_DUMPABLE, 0); /* no core file of the monitor for the agent's SIGSEGV */
    kill(getpid(), sig);
    _exit(128 + sig);
}

static const char *ending_name(enum ending ending) {
    switch (ending) {
    case ENDING_TIMED_OUT: return "timedOut";
    case ENDING_RUNNER_LOST: return "runnerLost";
    default: return "exited";
    }
}

/* What the monitor and the guard both are before they start the agent: out of the OOM killer's choice (the run's
   largest process goes, never the one that records its end or ends it), leader of a group of their own (signals to
   it must never reach whoever started them), and deaf to SIGTERM/SIGINT/SIGHUP, which are for the agent. */
static void hold_group(void) {
    write_proc("/proc/self/oom_score_adj", "-1000");
    if (getpgrp() != getpid()) setpgid(0, 0);
    struct sigaction ignore = {0};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &ignore, NULL);
    sigaction(SIGINT, &ignore, NULL);
    sigaction(SIGHUP, &ignore, NULL);
    sigaction(SIGPIPE, &ignore, NULL);
}

/* Starts the command in the caller's group, with default signals, as its child. */
static pid_t start(char **command) {
    pid_t agent = fork();
    if (agent != 0) return agent;
    reset_signals();
    write_proc("/proc/self/oom_score_adj", "0");
    umask(022);
    execv(command[0], command);
    fprintf(stderr, "dispatch-monitor: cannot start %s: %s\n", command[0], strerror(errno));
    _exit(127);
}

/* The guard: holds the command while its runner lives; SIGKILLs the whole group the moment the runner dies. */
static int guard(int argc, char **argv) {
    pid_t runner = 0;
    char **command = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            command = i + 1 < argc ? argv + i + 1 : NULL;
            break;
        }
        if (strcmp(argv[i], "--runner-pid") == 0 && i + 1 < argc) runner = (pid_t)atoi(argv[++i]);
        else return 2;
    }
    if (command == NULL || runner <= 0) return 2;
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, SIGCHLD);
    sigaddset(&wake, SIGUSR2); /* the parent-death signal the runner armed before exec */
    sigprocmask(SIG_BLOCK, &wake, NULL);
    if (getppid() != runner) return 125; /* the runner died before the guard could see it: start nothing */
    hold_group();
    pid_t agent = start(command);
    if (agent < 0) {
        fprintf(stderr, "dispatch-monitor: cannot fork: %s\n", strerror(errno));
        return 125;
    }
    for (;;) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&wake, NULL, &tick);
        int status = 0;
        if (waitpid(agent, &status, WNOHANG) == agent) mirror(status);
        if (sig == SIGUSR2 || getppid() != runner) break;
    }
    for (int round = 0; round < 100 && signal_group(SIGKILL) > 0; round++) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    _exit(128 + SIGKILL);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--guard") == 0) return guard(argc, argv);
    struct options options;
    if (parse(argc, argv, &options) != 0) {
        fprintf(stderr, "usage: dispatch-monitor --record PREFIX --allowed-ms MS [--slack-ms MS] [--grace-ms MS] "
                        "[--lease-ms MS] [--runner-pid PID] [--uid-lease FILE] -- PROGRAM [ARG...]\n");
        return 2;
    }
    /* The run's agent uid stays leased while this monitor lives (a shared lock its runner holds too, taken before
       the agent starts): a serve that dies leaves the uid to this run until its agent is over. Close-on-exec: the
       agent never holds it, so it cannot let it go. */
    if (options.uid_lease != NULL) {
        int lease = open(options.uid_lease, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (lease < 0 || flock(lease, LOCK_SH | LOCK_NB) != 0) {
            fprintf(stderr, "dispatch-monitor: cannot hold the agent uid lease %s: %s\n", options.uid_lease, strerror(errno));
            return 125;
        }
    }
    char monitor_path[4096], owner_path[4096], status_path[4096], abandoned_path[4096], text[512], boot[64];
    snprintf(monitor_path, sizeof monitor_path, "%s.monitor", options.record);
    snprintf(owner_path, sizeof owner_path, "%s.owner", options.record);
    snprintf(status_path, sizeof status_path, "%s.status", options.record);
    /* Written by whoever ended the run as lost (its runner died before this monitor recorded itself): stop. */
    snprintf(abandoned_path, sizeof abandoned_path, "%s.abandoned", options.record);
    boot_id(boot, sizeof boot);
    umask(077);
    hold_group();
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, SIGCHLD);
    sigaddset(&wake, SIGUSR1);
    sigprocmask(SIG_BLOCK, &wake, NULL);

    /* The runner is named, not read from getppid(): one that died before this line would otherwise look alive. */
    pid_t runner = options.runner > 0 ? options.runner : getppid();
    long long started_ms = now_ms();
    long long started_mono = monotonic_ms();
    snprintf(text, sizeof text,
             "{\"pid\":%d,\"startTime\":%llu,\"bootId\":\"%s\",\"startedAtMs\":%lld,\"startedAtBootMs\":%lld,\"allowedMs\":%lld}\n",
             (int)getpid(), start_time(getpid()), boot, started_ms, started_mono, options.allowed_ms);
    if (write_file(monitor_path, text) != 0) {
        fprintf(stderr, "dispatch-monitor: cannot write %s: %s\n", monitor_path, strerror(errno));
        return 125;
    }
    if (access(abandoned_path, F_OK) == 0) {
        fprintf(stderr, "dispatch-monitor: the run was ended as lost before its agent started\n");
        return 125;
    }

    pid_t agent = start(options.command);
    if (agent < 0) {
        fprintf(stderr, "dispatch-monitor: cannot fork: %s\n", strerror(errno));
        return 125;
    }

    long long deadline = started_mono + options.allowed_ms + options.slack_ms;
    long long orphaned_since = 0, kill_at = 0;
    enum ending ending = ENDING_NONE;
    int status = 0;
    for (;;) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        sigtimedwait(&wake, NULL, &tick);
        pid_t reaped = waitpid(agent, &status, WNOHANG);
        if (reaped == agent) break;
        if (reaped < 0 && errno != EINTR) {
            status = SIGKILL; /* cannot happen: the agent is our child */
            break;
        }
        long long now = monotonic_ms();
        if (ending == ENDING_NONE && now >= deadline) ending = ENDING_TIMED_OUT;
        if (ending == ENDING_NONE && getppid() != runner) {
            if (access(abandoned_path, F_OK) == 0) {
                ending = ENDING_RUNNER_LOST;
            } else if (adopted(owner_path)) {
                orphaned_since = 0;
            } else if (orphaned_since == 0) {
                orphaned_since = now;
            } else if (now - orphaned_since >= options.lease_ms) {
                ending = ENDING_RUNNER_LOST;
            }
        }
        if (ending != ENDING_NONE && kill_at == 0) {
            signal_group(SIGTERM);
            kill_at = now + options.grace_ms;
        }
        /* The namespace's init is in the group: with it every process of the namespace dies. */
        if (kill_at != 0 && now >= kill_at) signal_group(SIGKILL);
    }
    /* With its runner alive the runner ends what the agent left, after it has written the result (which never
       waits for a leftover holding stderr). With none, the monitor does: nothing outlives its run. */
    if (getppid() != runner && !adopted(owner_path)) end_group(options.grace_ms);

    snprintf(text, sizeof text,
             "{\"ending\":\"%s\",\"exitCode\":%d,\"signal\":%d,\"startedAtMs\":%lld,\"endedAtMs\":%lld}\n",
             ending_name(ending), WIFEXITED(status) ? WEXITSTATUS(status) : -1,
             WIFSIGNALED(status) ? WTERMSIG(status) : -1, started_ms, now_ms());
    if (write_file(status_path, text) != 0) {
        fprintf(stderr, "dispatch-monitor: cannot write %s: %s\n", status_path, strerror(errno));
    }
    mirror(status);
    return 0;
}
