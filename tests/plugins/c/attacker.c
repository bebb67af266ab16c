/* The sandbox's attack suite (tests/test_sandbox.py): each function tries one
 * thing a hostile plugin would, and says what happened as text: "DONE: ..."
 * when the attack worked, "blocked: <what the system call said>" when it did
 * not. The tests run each in the sandbox (it must be blocked) and, where that
 * is harmless, without one (it must work: the attack itself is real). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "channel_memfd.h"
#include "ferrule.h"

static int32_t say(const ferrule_host *host, ferrule_value *ret, const char *fmt, ...) {
    char text[4096];
    va_list ap;
    int n;
    char *out;
    va_start(ap, fmt);
    n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0) return ferrule_fail(host, "vsnprintf failed");
    if ((size_t)n >= sizeof text) n = (int)sizeof text - 1;
    out = (char *)host->alloc((size_t)n);
    if (out == NULL) return ferrule_fail(host, "out of memory");
    memcpy(out, text, (size_t)n);
    ret->bytes.ptr = out;
    ret->bytes.len = (size_t)n;
    ret->bytes.release = host->free;
    return FERRULE_OK;
}

#define BLOCKED(what) say(host, ret, "blocked: %s: %s", what, strerror(errno))
#define ATTACK(name) static int32_t name(const ferrule_host *host, void *state, const ferrule_value *args, \
                                         ferrule_value *ret)

static void hex(const unsigned char *p, size_t n, char *out) {
    size_t i;
    for (i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = 0;
}

/* args: pid, address, length: read the host's memory through /proc/PID/mem */
ATTACK(proc_mem_read) {
    char path[64], data[64], text[130];
    ssize_t got;
    int fd;
    size_t n = args[2].u64 < sizeof data ? (size_t)args[2].u64 : sizeof data;
    (void)state;
    snprintf(path, sizeof path, "/proc/%lld/mem", (long long)args[0].i64);
    fd = open(path, O_RDONLY);
    if (fd < 0) return BLOCKED("open /proc/PID/mem");
    got = pread(fd, data, n, (off_t)args[1].u64);
    close(fd);
    if (got <= 0) return BLOCKED("pread");
    hex((unsigned char *)data, (size_t)got, text);
    return say(host, ret, "DONE: %s", text);
}

/* args: pid, address, bytes: write them there through /proc/PID/mem */
ATTACK(proc_mem_write) {
    char path[64];
    int fd;
    ssize_t put;
    (void)state;
    snprintf(path, sizeof path, "/proc/%lld/mem", (long long)args[0].i64);
    fd = open(path, O_RDWR);
    if (fd < 0) return BLOCKED("open /proc/PID/mem");
    put = pwrite(fd, args[2].bytes.ptr, args[2].bytes.len, (off_t)args[1].u64);
    close(fd);
    if (put <= 0) return BLOCKED("pwrite");
    return say(host, ret, "DONE: wrote %zd bytes", put);
}

/* args: pid, address, bytes: process_vm_writev */
ATTACK(vm_write) {
    struct iovec local, remote;
    ssize_t put;
    (void)state;
    local.iov_base = (void *)args[2].bytes.ptr;
    local.iov_len = args[2].bytes.len;
    remote.iov_base = (void *)(uintptr_t)args[1].u64;
    remote.iov_len = args[2].bytes.len;
    put = process_vm_writev((pid_t)args[0].i64, &local, 1, &remote, 1, 0);
    if (put < 0) return BLOCKED("process_vm_writev");
    return say(host, ret, "DONE: wrote %zd bytes", put);
}

/* args: pid, address, length: process_vm_readv */
ATTACK(vm_read) {
    char data[64], text[130];
    struct iovec local, remote;
    ssize_t got;
    size_t n = args[2].u64 < sizeof data ? (size_t)args[2].u64 : sizeof data;
    (void)state;
    local.iov_base = data;
    local.iov_len = n;
    remote.iov_base = (void *)(uintptr_t)args[1].u64;
    remote.iov_len = n;
    got = process_vm_readv((pid_t)args[0].i64, &local, 1, &remote, 1, 0);
    if (got <= 0) return BLOCKED("process_vm_readv");
    hex((unsigned char *)data, (size_t)got, text);
    return say(host, ret, "DONE: %s", text);
}

/* args: pid: attach as a debugger (and let go again) */
ATTACK(ptrace_attach) {
    (void)state;
    if (ptrace(PTRACE_ATTACH, (pid_t)args[0].i64, NULL, NULL) < 0) return BLOCKED("ptrace(PTRACE_ATTACH)");
    waitpid((pid_t)args[0].i64, NULL, __WALL);
    ptrace(PTRACE_DETACH, (pid_t)args[0].i64, NULL, NULL);
    return say(host, ret, "DONE: attached");
}

/* args: pid, signal */
ATTACK(signal_pid) {
    (void)state;
    if (kill((pid_t)args[0].i64, (int)args[1].i64) < 0) return BLOCKED("kill");
    return say(host, ret, "DONE: signalled");
}

/* args: name: a variable of the environment */
ATTACK(read_env) {
    const char *value = getenv((const char *)args[0].bytes.ptr);
    (void)state;
    if (value == NULL) return say(host, ret, "blocked: no such variable");
    return say(host, ret, "DONE: %s", value);
}

/* args: path: the file's first bytes */
ATTACK(read_file) {
    char data[256];
    ssize_t got;
    int fd = open((const char *)args[0].bytes.ptr, O_RDONLY);
    (void)state;
    if (fd < 0) return BLOCKED("open");
    got = read(fd, data, sizeof data - 1);
    close(fd);
    if (got < 0) return BLOCKED("read");
    data[got] = 0;
    return say(host, ret, "DONE: %s", data);
}

/* args: path: the names in a directory */
ATTACK(list_dir) {
    char names[2048] = "";
    struct dirent *entry;
    DIR *dir = opendir((const char *)args[0].bytes.ptr);
    (void)state;
    if (dir == NULL) return BLOCKED("opendir");
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        if (strlen(names) + strlen(entry->d_name) + 2 >= sizeof names) break;
        strcat(names, entry->d_name);
        strcat(names, " ");
    }
    closedir(dir);
    if (names[0] == 0) return say(host, ret, "blocked: empty");
    return say(host, ret, "DONE: %s", names);
}

/* args: path, text: create the file */
ATTACK(write_file) {
    int fd = open((const char *)args[0].bytes.ptr, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    (void)state;
    if (fd < 0) return BLOCKED("open");
    if (write(fd, args[1].bytes.ptr, args[1].bytes.len) < 0) {
        close(fd);
        return BLOCKED("write");
    }
    close(fd);
    return say(host, ret, "DONE: written");
}

static int to_loopback(int type, int port, struct sockaddr_in *where) {
    memset(where, 0, sizeof *where);
    where->sin_family = AF_INET;
    where->sin_port = htons((uint16_t)port);
    where->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return socket(AF_INET, type, 0);
}

/* args: port: connect to 127.0.0.1:port and send a line */
ATTACK(tcp_connect) {
    struct sockaddr_in where;
    int fd = to_loopback(SOCK_STREAM, (int)args[0].u64, &where);
    (void)state;
    if (fd < 0) return BLOCKED("socket(AF_INET, SOCK_STREAM)");
    if (connect(fd, (struct sockaddr *)&where, sizeof where) < 0) {
        close(fd);
        return BLOCKED("connect");
    }
    if (write(fd, "stolen\n", 7) < 0) {
        close(fd);
        return BLOCKED("write");
    }
    close(fd);
    return say(host, ret, "DONE: connected");
}

/* args: port: a UDP datagram to 127.0.0.1:port */
ATTACK(udp_send) {
    struct sockaddr_in where;
    int fd = to_loopback(SOCK_DGRAM, (int)args[0].u64, &where);
    (void)state;
    if (fd < 0) return BLOCKED("socket(AF_INET, SOCK_DGRAM)");
    if (sendto(fd, "stolen", 6, 0, (struct sockaddr *)&where, sizeof where) < 0) {
        close(fd);
        return BLOCKED("sendto");
    }
    close(fd);
    return say(host, ret, "DONE: sent");
}

/* A netlink socket: how a process talks to the kernel's network stack. */
ATTACK(netlink) {
    int fd = socket(AF_NETLINK, SOCK_RAW, 0);
    (void)state; (void)args;
    if (fd < 0) return BLOCKED("socket(AF_NETLINK)");
    close(fd);
    return say(host, ret, "DONE: opened");
}

/* args: n: fork n processes that wait for ever (named ferrule-bomb) */
ATTACK(fork_bomb) {
    uint64_t i, made = 0;
    int err = 0;
    (void)state;
    for (i = 0; i < args[0].u64; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_NAME, "ferrule-bomb");
            for (;;) pause();
        }
        if (pid < 0) {
            err = errno;
            break;
        }
        made++;
    }
    if (made < args[0].u64) return say(host, ret, "blocked: forked %llu, then %s", (unsigned long long)made, strerror(err));
    return say(host, ret, "DONE: forked %llu", (unsigned long long)made);
}

/* args: n, mib: fork n processes that each fill mib MiB (each within the
 * address-space limit) and hold it; how many hold theirs at once, once all
 * have reported or died. */
ATTACK(memory_hogs) {
    uint64_t i, n = args[0].u64, made = 0, holding = 0;
    size_t bytes = (size_t)args[1].u64 << 20;
    pid_t pids[64];
    int held[2];
    (void)state;
    if (n > 64) n = 64;
    if (pipe(held) < 0) return BLOCKED("pipe");
    for (i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            volatile char *p;
            size_t k;
            prctl(PR_SET_NAME, "ferrule-hog");
            close(held[0]);
            p = (volatile char *)malloc(bytes);
            if (p == NULL) _exit(1);
            for (k = 0; k < bytes; k += 4096) p[k] = 0x5a;  /* every page written (volatile: not elided) */
            if (write(held[1], "x", 1) != 1) _exit(1);
            for (;;) pause();
        }
        if (pid < 0) break;
        pids[made++] = pid;
    }
    close(held[1]);
    for (;;) {  /* count the holders until every child has reported or died */
        char byte;
        struct timeval tv = {1, 0};  /* a second of silence: the rest hold, or are gone */
        fd_set set;
        FD_ZERO(&set);
        FD_SET(held[0], &set);
        if (select(held[0] + 1, &set, NULL, NULL, &tv) <= 0) break;
        if (read(held[0], &byte, 1) != 1) break;  /* EOF: every writer is gone */
        holding++;
    }
    close(held[0]);
    holding = 0;  /* those still alive hold theirs now: the others failed, or the OOM killer took them */
    for (i = 0; i < made; i++) {
        if (waitpid(pids[i], NULL, WNOHANG) == 0) holding++;
    }
    for (i = 0; i < made; i++) {
        kill(pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
    }
    return say(host, ret, "%llu of %llu held %llu MiB", (unsigned long long)holding, (unsigned long long)made,
               (unsigned long long)args[1].u64);
}

/* A daemon: fork, setsid, fork again, and live on (named ferrule-daemon).
 * It clears the parent-death signal isolated mode gives forks, as a hostile
 * plugin would, before its parent goes. */
ATTACK(leave_daemon) {
    int ready[2];
    pid_t pid;
    (void)state; (void)args;
    if (pipe(ready) < 0) return BLOCKED("pipe");
    pid = fork();
    if (pid < 0) return BLOCKED("fork");
    if (pid == 0) {
        char byte;
        setsid();
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, 0);
            prctl(PR_SET_NAME, "ferrule-daemon");
            if (write(ready[1], "x", 1) < 0) _exit(1);
            for (;;) pause();
        }
        if (read(ready[0], &byte, 1) < 0) _exit(1);
        _exit(0);
    }
    close(ready[1]);
    waitpid(pid, NULL, 0);
    close(ready[0]);
    return say(host, ret, "DONE: a daemon runs");
}

/* args: path of a set-user-id program that prints its effective uid */
ATTACK(exec_setuid) {
    int pipefd[2];
    char out[128];
    ssize_t got;
    pid_t pid;
    (void)state;
    if (pipe(pipefd) < 0) return BLOCKED("pipe");
    pid = fork();
    if (pid < 0) return BLOCKED("fork");
    if (pid == 0) {
        char *argv[] = {(char *)args[0].bytes.ptr, NULL};
        char *envp[] = {NULL};
        dup2(pipefd[1], 1);
        execve((const char *)args[0].bytes.ptr, argv, envp);
        printf("execve: %s", strerror(errno));
        fflush(stdout);
        _exit(1);
    }
    close(pipefd[1]);
    got = read(pipefd[0], out, sizeof out - 1);
    close(pipefd[0]);
    waitpid(pid, NULL, 0);
    out[got > 0 ? got : 0] = 0;
    return say(host, ret, "%s", out);
}

ATTACK(keyring) {
    long id = syscall(SYS_add_key, "user", "ferrule-attack", "x", 1, -2 /* KEY_SPEC_PROCESS_KEYRING */);
    (void)state; (void)args;
    if (id < 0) return BLOCKED("add_key");
    return say(host, ret, "DONE: key %ld", id);
}

ATTACK(mount_tmpfs) {
    (void)state; (void)args;
    if (mount("none", "/tmp", "tmpfs", 0, NULL) < 0) return BLOCKED("mount");
    return say(host, ret, "DONE: mounted");
}

ATTACK(new_userns) {
    (void)state; (void)args;
    if (unshare(CLONE_NEWUSER) < 0) return BLOCKED("unshare(CLONE_NEWUSER)");
    return say(host, ret, "DONE: a new user namespace");
}

ATTACK(io_uring) {
    char params[120];
    long fd;
    (void)state; (void)args;
    memset(params, 0, sizeof params);
    fd = syscall(SYS_io_uring_setup, 4, params);
    if (fd < 0) return BLOCKED("io_uring_setup");
    close((int)fd);
    return say(host, ret, "DONE: a ring");
}

/* The 32-bit system call gate: i386's getpid is 20, which on x86-64 would
 * be another call; a filter written for x86-64 numbers only would miss it. */
ATTACK(compat_syscall) {
    long result = -1;
    (void)state; (void)args;
#if defined(__x86_64__)
    __asm__ volatile("int $0x80" : "=a"(result) : "a"(20L) : "memory");
#endif
    return say(host, ret, "DONE: int 0x80 returned %ld", result);
}

/* The file descriptors open in this process, with what they are. */
ATTACK(fds) {
    char text[3000] = "", link[256], path[300], item[600];
    struct dirent *entry;
    DIR *dir = opendir("/proc/self/fd");
    (void)state; (void)args;
    if (dir == NULL) return BLOCKED("opendir /proc/self/fd");
    while ((entry = readdir(dir)) != NULL) {
        ssize_t n;
        if (entry->d_name[0] == '.' || atoi(entry->d_name) == dirfd(dir)) continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
        n = readlink(path, link, sizeof link - 1);
        link[n > 0 ? n : 0] = 0;
        snprintf(item, sizeof item, "%s=%s\n", entry->d_name, link);
        if (strlen(text) + strlen(item) < sizeof text) strcat(text, item);
    }
    closedir(dir);
    return say(host, ret, "%s", text);
}

/* args: path: open it for writing, and write nothing (a kernel setting, say) */
ATTACK(open_write) {
    int fd = open((const char *)args[0].bytes.ptr, O_WRONLY);
    (void)state;
    if (fd < 0) return BLOCKED("open for writing");
    close(fd);
    return say(host, ret, "DONE: open for writing");
}

/* args: path of a Unix socket: connect to it */
ATTACK(unix_connect) {
    struct sockaddr_un where;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    (void)state;
    if (fd < 0) return BLOCKED("socket(AF_UNIX)");
    memset(&where, 0, sizeof where);
    where.sun_family = AF_UNIX;
    strncpy(where.sun_path, (const char *)args[0].bytes.ptr, sizeof where.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&where, sizeof where) < 0) {
        close(fd);
        return BLOCKED("connect");
    }
    close(fd);
    return say(host, ret, "DONE: connected");
}

/* args: mib: memory outside the address space, in a memfd of its own */
ATTACK(memfd_fill) {
    int fd = (int)syscall(SYS_memfd_create, "hoard", 0);
    (void)state;
    if (fd < 0) return BLOCKED("memfd_create");
    if (ftruncate(fd, (off_t)args[0].u64 << 20) < 0 || fallocate(fd, 0, 0, (off_t)args[0].u64 << 20) < 0) {
        close(fd);
        return BLOCKED("fallocate");
    }
    close(fd);
    return say(host, ret, "DONE: filled");
}

/* args: mib: a System V shared memory segment */
ATTACK(sysv_shm) {
    int id = shmget(IPC_PRIVATE, (size_t)args[0].u64 << 20, IPC_CREAT | 0600);
    (void)state;
    if (id < 0) return BLOCKED("shmget");
    shmctl(id, IPC_RMID, NULL);
    return say(host, ret, "DONE: a segment");
}

/* args: offset in MiB: store a page in the channel's memfd there, without
 * mapping it (the address-space limit does not see it) */
ATTACK(channel_fill) {
    int fd = channel_memfd();
    (void)state;
    if (fd < 0) return say(host, ret, "blocked: no channel memfd");
    if (pwrite(fd, "x", 1, (off_t)args[0].u64 << 20) < 0) return BLOCKED("pwrite");
    return say(host, ret, "DONE: stored");
}

/* args: n: a result of n bytes, through the shared area */
static int32_t big_result(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    size_t n = (size_t)args[0].u64;
    char *out = (char *)host->alloc(n);
    (void)state;
    if (out == NULL) return ferrule_fail(host, "out of memory");
    memset(out, 'x', n);
    ret->bytes.ptr = out;
    ret->bytes.len = n;
    ret->bytes.release = host->free;
    return FERRULE_OK;
}

static int32_t add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host; (void)state;
    ret->i64 = args[0].i64 + args[1].i64;
    return FERRULE_OK;
}

static int32_t greet_host(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    ferrule_value arg, got;
    (void)state;
    ferrule_log(host, FERRULE_LOG_INFO, "calling the host back");
    arg.i64 = args[1].i64;
    if (ferrule_invoke(host, args[0].func, &arg, &got) != FERRULE_OK) return ferrule_fail(host, "the host function failed");
    ret->i64 = got.i64;
    return FERRULE_OK;
}

#define FN(name, sig, doc) \
    static const ferrule_function fn_##name = FERRULE_FUNCTION(#name, sig, doc, FERRULE_FN_THREAD_SAFE, name)
FN(proc_mem_read, "(pid: i64, address: u64, length: u64) -> str", "reads /proc/PID/mem");
FN(proc_mem_write, "(pid: i64, address: u64, data: bytes) -> str", "writes /proc/PID/mem");
FN(vm_read, "(pid: i64, address: u64, length: u64) -> str", "process_vm_readv");
FN(vm_write, "(pid: i64, address: u64, data: bytes) -> str", "process_vm_writev");
FN(ptrace_attach, "(pid: i64) -> str", "PTRACE_ATTACH");
FN(signal_pid, "(pid: i64, signal: i64) -> str", "kill(pid, signal)");
FN(read_env, "(name: str) -> str", "getenv");
FN(read_file, "(path: str) -> str", "reads a file");
FN(list_dir, "(path: str) -> str", "lists a directory");
FN(write_file, "(path: str, text: bytes) -> str", "creates a file");
FN(tcp_connect, "(port: u64) -> str", "connects to 127.0.0.1");
FN(udp_send, "(port: u64) -> str", "a datagram to 127.0.0.1");
FN(netlink, "() -> str", "opens a netlink socket");
FN(fork_bomb, "(n: u64) -> str", "forks n waiting processes");
FN(memory_hogs, "(n: u64, mib: u64) -> str", "n processes that each fill and hold mib MiB");
FN(leave_daemon, "() -> str", "leaves a setsid daemon");
FN(exec_setuid, "(path: str) -> str", "runs a set-user-id program");
FN(keyring, "() -> str", "add_key");
FN(mount_tmpfs, "() -> str", "mounts a tmpfs");
FN(new_userns, "() -> str", "unshare(CLONE_NEWUSER)");
FN(io_uring, "() -> str", "io_uring_setup");
FN(compat_syscall, "() -> str", "a 32-bit system call");
FN(fds, "() -> str", "lists its open file descriptors");
FN(big_result, "(n: u64) -> bytes", "n bytes");
FN(open_write, "(path: str) -> str", "opens a file for writing");
FN(unix_connect, "(path: str) -> str", "connects to a Unix socket");
FN(memfd_fill, "(mib: u64) -> str", "fills a memfd of its own");
FN(sysv_shm, "(mib: u64) -> str", "a System V shared memory segment");
FN(channel_fill, "(mib: u64) -> str", "stores a page in the channel's memfd at an offset");
FN(add, "(a: i64, b: i64) -> i64", "a + b");
FN(greet_host, "(f: fn(i64) -> i64, x: i64) -> i64", "logs, then f(x)");

static const ferrule_function *const functions[] = {
    &fn_proc_mem_read, &fn_proc_mem_write, &fn_vm_read, &fn_vm_write, &fn_ptrace_attach, &fn_signal_pid,
    &fn_read_env, &fn_read_file, &fn_list_dir, &fn_write_file, &fn_tcp_connect, &fn_udp_send, &fn_netlink,
    &fn_fork_bomb, &fn_leave_daemon, &fn_exec_setuid, &fn_keyring, &fn_mount_tmpfs, &fn_new_userns, &fn_io_uring,
    &fn_compat_syscall, &fn_fds, &fn_big_result, &fn_add, &fn_greet_host, &fn_open_write, &fn_unix_connect,
    &fn_memfd_fill, &fn_sysv_shm, &fn_channel_fill, &fn_memory_hogs,
};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.tests.attacker",
    "Attacker",
    "1.0.0",
    "attacks the host, for the sandbox tests",
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    NULL,
    NULL,
    0,
    0,
    NULL,
};

FERRULE_ENTRY { return &descriptor; }
