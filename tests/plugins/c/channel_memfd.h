/* For the test attackers (forge.c, attacker.c): the file descriptor of
 * isolated mode's channel memfd in this process, found as a hostile plugin
 * would, through /proc/self/fd; -1 if there is none (not isolated). */
#ifndef FERRULE_TESTS_CHANNEL_MEMFD_H
#define FERRULE_TESTS_CHANNEL_MEMFD_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int channel_memfd(void) {
    char path[300], target[256];
    struct dirent *entry;
    int fd = -1;
    DIR *dir = opendir("/proc/self/fd");
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        ssize_t n;
        snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
        n = readlink(path, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            if (strstr(target, "memfd:ferrule") != NULL) fd = atoi(entry->d_name);
        }
    }
    if (dir != NULL) closedir(dir);
    return fd;
}

#endif
