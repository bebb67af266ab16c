/* The channel of isolated mode, in C: the futex-based wake-ups between the
 * host and its child, and the child's lifeline. Optional: ferrule/_isolation
 * /channel.py runs the same protocol on cffi when this is not built. It has
 * nothing to do with the call accelerator (ferrule/_call/_speedups.c).
 *
 * The layout of ChannelHead is isolation/protocol.py's HEAD; a test holds
 * the two together (offsets below). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

/* The transport of isolated mode: a sequence word per direction in memory
 * shared with the child (0: to the child, 1: to the host). A sender bumps the
 * word and makes the futex call only when the receiver said it sleeps. A
 * receiver spins for a moment first, since answers usually come within
 * microseconds, then sleeps on the futex. */
typedef struct {
    uint32_t seq[2];
    uint32_t sleeping[2];
    /* The head of the last message: written by its
     * sender before the sequence word moves, read by its receiver after. */
    uint32_t kind, arg;
    uint64_t base, length, size;
    /* Each receiver's spin budget in ns, adapted to how answers come: it
     * doubles when spinning caught the message, halves when it had to sleep
     * (the peer shares this CPU, or the call is slow). Only the receiver of
     * that direction writes it. */
    uint32_t budget[2];
} ChannelHead;

static int64_t monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A sleeping flag of AWAITING (not 1) says the receiver is an event loop
 * waiting on a pipe, not a thread on the futex: the sender writes a byte to
 * notify_fd, the pipe's end the host passed this process (only an isolated
 * child has one; -1 elsewhere). */
#define AWAITING 2u
static int notify_fd = -1;

static uint32_t channel_wait_for(ChannelHead *head, int which, uint32_t seen, int64_t spin_ns, int64_t timeout_ns) {
    uint32_t *word = &head->seq[which];
    uint32_t now;
    int64_t start = monotonic_ns();
    int64_t budget = head->budget[which] ? (int64_t)head->budget[which] : spin_ns;
    if (budget > spin_ns) budget = spin_ns;
    /* Spin with the pause instruction for the first microseconds, then
     * yield between looks: on a busy machine the peer may be waiting for
     * this very CPU. */
    for (unsigned i = 1;; i++) {
        now = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (now != seen) {
            int64_t grown = budget * 2 > spin_ns ? spin_ns : budget * 2;
            head->budget[which] = (uint32_t)(grown < 1000 ? 1000 : grown);
            return now;
        }
        if ((i & 63) == 0) {
            int64_t spent = monotonic_ns() - start;
            if (spent >= budget) break;
            if (spent >= 2000) sched_yield();
        }
        cpu_relax();
    }
    int64_t deadline = start + timeout_ns;
    for (;;) {
        __atomic_store_n(&head->sleeping[which], 1, __ATOMIC_SEQ_CST);
        now = __atomic_load_n(word, __ATOMIC_SEQ_CST);
        if (now != seen) break;
        int64_t left = deadline - monotonic_ns();
        if (left <= 0) break;
#ifdef __linux__
        struct timespec t = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
        syscall(SYS_futex, word, FUTEX_WAIT, seen, &t, NULL, 0);  /* woken, changed, timed out or EINTR */
#else
        struct timespec t = {0, left < 50000 ? (long)left : 50000L};
        nanosleep(&t, NULL);
#endif
    }
    __atomic_store_n(&head->sleeping[which], 0, __ATOMIC_SEQ_CST);
    /* An answer that came soon after the spin gave up says spin longer (a
     * wake-up from the futex costs far more than the spin would have); a
     * long wait says the calls are slow, and spinning is wasted. */
    int64_t waited = monotonic_ns() - start;
    if (now != seen && waited < spin_ns) {
        int64_t grown = waited * 2 > budget * 2 ? waited * 2 : budget * 2;
        head->budget[which] = (uint32_t)(grown > spin_ns ? spin_ns : grown);
    } else {
        head->budget[which] = (uint32_t)(budget / 2 < 500 ? 500 : budget / 2);
    }
    return now;
}

static PyObject *channel_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "send(address, direction, kind, arg, base, length, size)");
        return NULL;
    }
    unsigned long long v[7];
    for (int i = 0; i < 7; i++) {
        v[i] = PyLong_AsUnsignedLongLong(args[i]);
        if (v[i] == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    }
    int which = (int)v[1];
    if (which != 0 && which != 1) {
        PyErr_SetString(PyExc_ValueError, "direction must be 0 or 1");
        return NULL;
    }
    ChannelHead *head = (ChannelHead *)(uintptr_t)v[0];
    head->kind = (uint32_t)v[2];
    head->arg = (uint32_t)v[3];
    head->base = v[4];
    head->length = v[5];
    head->size = v[6];
    __atomic_add_fetch(&head->seq[which], 1, __ATOMIC_SEQ_CST);
    uint32_t sleeping = __atomic_load_n(&head->sleeping[which], __ATOMIC_SEQ_CST);
    if (sleeping == AWAITING && notify_fd >= 0) {
        char one = 1;
        ssize_t wrote;
        do {
            wrote = write(notify_fd, &one, 1);  /* EAGAIN: the pipe is full, so the peer is woken anyway */
        } while (wrote < 0 && errno == EINTR);
    }
#ifdef __linux__
    else if (sleeping) {
        syscall(SYS_futex, &head->seq[which], FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
#endif
    Py_RETURN_NONE;
}

/* arm(address, direction, seen) -> bool: an event loop is about to wait for
 * the next message of direction on the notifier pipe: say
 * so in the sleeping flag, then look at the sequence word once more, both
 * sequentially consistent, so that either this look sees the message or its
 * sender sees the flag. True when the message came meanwhile. The loop
 * waits on its end of the pipe whose other end is the child's notify_fd. */
static PyObject *channel_arm(PyObject *module, PyObject *args) {
    unsigned long long address;
    int which;
    unsigned int seen;
    (void)module;
    if (!PyArg_ParseTuple(args, "KiI", &address, &which, &seen)) return NULL;
    if (which != 0 && which != 1) {
        PyErr_SetString(PyExc_ValueError, "direction must be 0 or 1");
        return NULL;
    }
    ChannelHead *head = (ChannelHead *)(uintptr_t)address;
    __atomic_store_n(&head->sleeping[which], AWAITING, __ATOMIC_SEQ_CST);
    return PyBool_FromLong(__atomic_load_n(&head->seq[which], __ATOMIC_SEQ_CST) != (uint32_t)seen);
}

static PyObject *channel_disarm(PyObject *module, PyObject *args) {
    unsigned long long address;
    int which;
    (void)module;
    if (!PyArg_ParseTuple(args, "Ki", &address, &which)) return NULL;
    if (which != 0 && which != 1) {
        PyErr_SetString(PyExc_ValueError, "direction must be 0 or 1");
        return NULL;
    }
    __atomic_store_n(&((ChannelHead *)(uintptr_t)address)->sleeping[which], 0, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyObject *channel_set_notify(PyObject *module, PyObject *arg) {
    (void)module;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    notify_fd = (int)fd;
    Py_RETURN_NONE;
}

static PyObject *channel_wait(PyObject *module, PyObject *args) {
    unsigned long long address;
    int which;
    unsigned int seen;
    long long spin_ns, timeout_ns;
    uint32_t now;
    (void)module;
    if (!PyArg_ParseTuple(args, "KiILL", &address, &which, &seen, &spin_ns, &timeout_ns)) return NULL;
    if (which != 0 && which != 1) {
        PyErr_SetString(PyExc_ValueError, "direction must be 0 or 1");
        return NULL;
    }
    ChannelHead *head = (ChannelHead *)(uintptr_t)address;
    Py_BEGIN_ALLOW_THREADS
    now = channel_wait_for(head, which, (uint32_t)seen, spin_ns, timeout_ns);
    Py_END_ALLOW_THREADS
    if (now == (uint32_t)seen) Py_RETURN_NONE;
    return Py_BuildValue("(kkkKKK)", (unsigned long)now, (unsigned long)head->kind, (unsigned long)head->arg,
                         (unsigned long long)head->base, (unsigned long long)head->length,
                         (unsigned long long)head->size);
}

/* Set in an isolated child: processes the plugin forks get SIGKILL when the
 * child dies, so they do not outlive it. */
static int die_with_parent;

static void after_fork_in_child(void) {
#ifdef __linux__
    if (die_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
}

/* The child of isolated mode ends when the host does, however the host ends:
 * a thread outside Python (a plugin may hold the GIL forever) waits for the
 * end of a pipe whose other end only the host holds. */
static void *watch_lifeline(void *arg) {
    int fd = (int)(intptr_t)arg;
    char byte;
    for (;;) {
        ssize_t got = read(fd, &byte, 1);
        if (got == 0 || (got < 0 && errno != EINTR)) _exit(0);
    }
    return NULL;
}

static PyObject *become_isolated_child(PyObject *module, PyObject *arg) {
    (void)module;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int failed = pthread_create(&thread, &attr, watch_lifeline, (void *)(intptr_t)fd);
    pthread_attr_destroy(&attr);
    if (failed) {
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    static int fork_hook;
    if (!fork_hook) {
        fork_hook = 1;
        pthread_atfork(NULL, NULL, after_fork_in_child);
    }
    die_with_parent = 1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"send", (PyCFunction)(void (*)(void))channel_send, METH_FASTCALL,
     "send(address, direction, kind, arg, base, length, size): write the head, bump the sequence word, wake a sleeper."},
    {"wait", channel_wait, METH_VARARGS,
     "wait(address, direction, seen, spin_ns, timeout_ns): (seq, kind, arg, base, length, size), or None at the timeout."},
    {"arm", channel_arm, METH_VARARGS,
     "arm(address, direction, seen) -> bool: flag an event loop's wait (True: the message came meanwhile)."},
    {"disarm", channel_disarm, METH_VARARGS, "disarm(address, direction): clear the flag arm() set."},
    {"set_notify", channel_set_notify, METH_O,
     "In an isolated child: the pipe to write when the host's event loop awaits a message."},
    {"become_isolated_child", become_isolated_child, METH_O,
     "In an isolated child: exit when the lifeline fd reaches its end; forked copies die with this process."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ferrule._isolation._channel", "isolated mode's channel, in C.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__channel(void) {
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    PyObject *layout = Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n}", "seq", (Py_ssize_t)offsetof(ChannelHead, seq),
        "sleeping", (Py_ssize_t)offsetof(ChannelHead, sleeping), "kind", (Py_ssize_t)offsetof(ChannelHead, kind),
        "arg", (Py_ssize_t)offsetof(ChannelHead, arg), "base", (Py_ssize_t)offsetof(ChannelHead, base),
        "length", (Py_ssize_t)offsetof(ChannelHead, length), "size", (Py_ssize_t)offsetof(ChannelHead, size),
        "budget", (Py_ssize_t)offsetof(ChannelHead, budget), "sizeof", (Py_ssize_t)sizeof(ChannelHead));
    if (layout == NULL || PyModule_AddObject(m, "HEAD_LAYOUT", layout) < 0) {
        Py_XDECREF(layout);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

