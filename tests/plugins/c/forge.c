/* An isolated-mode attacker (tests/test_isolated.py): forge(size) grows the
 * channel's memfd to size bytes of data area (sparse: no memory is used) and
 * starts a thread that waits for the child to post its answer, then writes
 * size into the channel head's "size" field, so that the host, reading the
 * head of the answer, is told the data area is that large. A host that
 * believed it would map and copy what the child announces: RLIMIT_AS does
 * not count the memfd's pages. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "channel_memfd.h"
#include "ferrule.h"

/* The channel head (_isolation/protocol.py): the child-to-host sequence word and the "size" field. */
#define HEAD_SEQ_TO_HOST 4
#define HEAD_SIZE_OFFSET 40

static char *head;
static uint64_t forged;

static void *write_after_post(void *arg) {
    volatile uint32_t *seq = (volatile uint32_t *)(head + HEAD_SEQ_TO_HOST);
    uint32_t before = *seq;
    struct timespec start, now;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (*seq == before) { /* the child posts its answer */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 2) return NULL;
    }
    *(volatile uint64_t *)(head + HEAD_SIZE_OFFSET) = forged;
    return NULL;
}

static int32_t forge(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    long page = sysconf(_SC_PAGESIZE);
    int fd = channel_memfd();
    pthread_t thread;
    (void)state;
    if (fd < 0) return ferrule_fail(host, "forge: no channel memfd (not isolated?)");
    forged = args[0].u64;
    /* A host that seals the file at its bound refuses the growth; the forged
     * announcement is the attack either way. */
    if (ftruncate(fd, (off_t)(page + forged)) != 0) { /* sealed: go on */ }
    head = (char *)mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if ((void *)head == MAP_FAILED) return ferrule_fail(host, "forge: mmap failed");
    if (pthread_create(&thread, NULL, write_after_post, NULL) != 0) return ferrule_fail(host, "forge: no thread");
    pthread_detach(thread);
    ret->i64 = 0;
    return FERRULE_OK;
}

static const ferrule_function f_forge =
    FERRULE_FUNCTION("forge", "(size: u64) -> i64", "announces a data area of size bytes", FERRULE_FN_THREAD_SAFE, forge);
static const ferrule_function *const functions[] = {&f_forge};
static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.tests.forge", "Forge", "1.0.0", "forges the channel head", "MIT",
    1, 0, functions, NULL, NULL, 0, 0, NULL,
};

FERRULE_ENTRY { return &descriptor; }
