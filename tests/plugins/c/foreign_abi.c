/* A plugin standard that is not ferrule's, for tests/test_cdecl.py: an
 * entry point hands out descriptors of metadata and function pointers
 * (instantiate, connect a buffer, run, clean up), in the manner of the
 * audio plugin standards. ferrule hosts it through ferrule.Library alone.
 *
 * Also: a logger callback the library keeps and calls later, and a string
 * it allocates that the caller frees with fx_free (which counts). */
#include <stdlib.h>
#include <string.h>

#define FX_API __attribute__((visibility("default")))

typedef struct fx_descriptor {
    unsigned long unique_id;
    const char *label;
    const char *name;
    unsigned long port_count; /* 0: control (one float), 1: input, 2: output */
    void *(*instantiate)(const struct fx_descriptor *descriptor, unsigned long sample_rate);
    void (*connect_port)(void *instance, unsigned long port, float *data);
    void (*run)(void *instance, unsigned long sample_count);
    void (*cleanup)(void *instance);
} fx_descriptor;

typedef struct {
    const fx_descriptor *descriptor;
    unsigned long rate;
    float *ports[3];
} fx_instance;

static void (*logger)(const char *message);
static int frees;

static void say(const char *message) {
    if (logger != NULL) logger(message);
}

static void *instantiate(const fx_descriptor *descriptor, unsigned long sample_rate) {
    fx_instance *fx = calloc(1, sizeof *fx);
    if (fx == NULL) return NULL;
    fx->descriptor = descriptor;
    fx->rate = sample_rate;
    say("instantiated");
    return fx;
}

static void connect_port(void *instance, unsigned long port, float *data) {
    fx_instance *fx = instance;
    if (port < 3) fx->ports[port] = data;
}

static void run_gain(void *instance, unsigned long n) {
    fx_instance *fx = instance;
    float gain = *fx->ports[0];
    for (unsigned long i = 0; i < n; i++) fx->ports[2][i] = fx->ports[1][i] * gain;
}

/* Adds the control value plus one per kHz of the sample rate. */
static void run_offset(void *instance, unsigned long n) {
    fx_instance *fx = instance;
    float offset = *fx->ports[0] + (float)(fx->rate / 1000);
    for (unsigned long i = 0; i < n; i++) fx->ports[2][i] = fx->ports[1][i] + offset;
}

static void cleanup(void *instance) {
    say("cleaned up");
    free(instance);
}

static const fx_descriptor descriptors[] = {
    {1001, "gain", "Gain", 3, instantiate, connect_port, run_gain, cleanup},
    {1002, "offset", "Offset", 3, instantiate, connect_port, run_offset, cleanup},
};

FX_API const fx_descriptor *fx_descriptor_at(unsigned long index) {
    return index < sizeof descriptors / sizeof descriptors[0] ? &descriptors[index] : NULL;
}

/* The library keeps the callback (NULL: no logging) and calls it later. */
FX_API void fx_set_logger(void (*log)(const char *message)) { logger = log; }
FX_API void fx_log(const char *message) { say(message); }

FX_API char *fx_describe(unsigned long index) {
    const fx_descriptor *d = fx_descriptor_at(index);
    if (d == NULL) return NULL;
    char *text = malloc(strlen(d->label) + strlen(d->name) + 4);
    if (text != NULL) {
        strcpy(text, d->label);
        strcat(text, " (");
        strcat(text, d->name);
        strcat(text, ")");
    }
    return text;
}

FX_API void fx_free(void *text) {
    if (text != NULL) frees++;
    free(text);
}

FX_API int fx_frees(void) { return frees; }

/* A function that returns a function pointer. */
static int add(int a, int b) { return a + b; }
FX_API int (*fx_adder(void))(int, int) { return add; }
