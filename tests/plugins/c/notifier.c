/* A hostile isolated plugin against awaited calls: it finds the write end
 * of the notifier pipe the host gave its process and closes it, floods it
 * from a thread of its own, or replaces it with /dev/null. The host's
 * awaited calls must stay correct and cheap (tests/test_aio.py). */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferrule.h"

/* The one pipe end this process may only write: the notifier. */
static int notifier(void) {
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *entry;
    int found = -1;
    if (dir == NULL) {
        return -1;
    }
    while (found < 0 && (entry = readdir(dir)) != NULL) {
        char path[64], target[128];
        int fd = atoi(entry->d_name);
        ssize_t n;
        if (fd <= 2) {
            continue;
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        n = readlink(path, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            if (strncmp(target, "pipe:", 5) == 0 && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY) {
                found = fd;
            }
        }
    }
    closedir(dir);
    return found;
}

static int flooded = -1;

/* A byte at a time, without a pause: the pipe is never empty for long. */
static void *flood(void *unused) {
    char byte = 1;
    (void)unused;
    for (;;) {
        if (write(flooded, &byte, 1) < 0) {
            sched_yield();
        }
    }
    return NULL;
}

/* mode 0: close it; 1: flood it; 2: put /dev/null in its place. Returns the fd, or -1. */
static int32_t tamper(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    int fd = notifier();
    (void)state;
    if (fd >= 0) {
        if (args[0].i64 == 0) {
            close(fd);
        } else if (args[0].i64 == 1) {
            pthread_t thread;
            flooded = fd;
            if (pthread_create(&thread, NULL, flood, NULL) != 0) {
                return ferrule_fail(host, "pthread_create failed");
            }
            pthread_detach(thread);
        } else {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, fd);
            close(null);
        }
    }
    ret->i64 = fd;
    return FERRULE_OK;
}

static int32_t sleep_ms(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    struct timespec t;
    (void)host;
    (void)state;
    (void)ret;
    t.tv_sec = (time_t)(args[0].u64 / 1000);
    t.tv_nsec = (long)(args[0].u64 % 1000) * 1000000L;
    nanosleep(&t, NULL);
    return FERRULE_OK;
}

static int32_t add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    (void)host;
    (void)state;
    ret->i64 = args[0].i64 + args[1].i64;
    return FERRULE_OK;
}

static const ferrule_function fn_tamper =
    FERRULE_FUNCTION("tamper", "(mode: i64) -> i64", "tampers with the notifier pipe", FERRULE_FN_THREAD_SAFE, tamper);
static const ferrule_function fn_sleep =
    FERRULE_FUNCTION("sleep_ms", "(ms: u64)", "sleeps", FERRULE_FN_THREAD_SAFE, sleep_ms);
static const ferrule_function fn_add = FERRULE_FUNCTION("add", "(a: i64, b: i64) -> i64", "a + b", FERRULE_FN_THREAD_SAFE, add);
static const ferrule_function *const functions[] = {&fn_tamper, &fn_sleep, &fn_add};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.tests.notifier", "Notifier attacker", "1.0.0",
    "tampers with the pipe awaited calls are woken through", "MIT", 3, 0, functions, NULL, NULL, 0, 0, NULL,
};

FERRULE_ENTRY { return &descriptor; }
