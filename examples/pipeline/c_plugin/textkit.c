/* textkit (C): the pipeline example's C plugin, built only from ferrule.h and
 * the header `ferrule generate` wrote from pipeline_api.py
 * (examples/pipeline/generated/pipeline_api.h, prefix "pipeline").
 *
 *   Transform "censor": masks the words the host's Dictionary lists as
 *                       "banned" (a client of the host's Dictionary service).
 *   Analyzer  "bytes":  word, line and code point counts, byte histogram.
 *
 * Build (from the repository root):
 *   cc -shared -fPIC -fvisibility=hidden -O2 -std=c99 -Wall -Wextra -pedantic -Werror \
 *      -I sdk/c/include -I examples/pipeline/generated \
 *      examples/pipeline/c_plugin/textkit.c -o build/libtextkit_c.so
 *
 * Ownership, in short: arguments are borrowed for the call; a str result is
 * allocated with host->alloc and released by the host (host->free); whatever
 * a Dictionary call hands back (an error message) is ours to release.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrule.h"
#include "pipeline_api.h"

static int is_letter(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Not a UTF-8 continuation byte (10xxxxxx): starts a code point. */
static int starts_code_point(unsigned char c) {
    return (c & 0xC0) != 0x80;
}

/* ------------------------------------------------------------------ Transform "censor" */

/* One instance per stage: its options. Not thread-safe, and need not be:
 * the host never runs two methods of one instance at once. */
typedef struct censor {
    char mask;
} censor;

static int32_t censor_create(const ferrule_host *host, void *plugin_state, censor **self) {
    censor *made = (censor *)malloc(sizeof *made); /* freed in censor_destroy */
    (void)plugin_state;
    if (made == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    made->mask = '*';
    *self = made;
    return FERRULE_OK;
}

static void censor_destroy(const ferrule_host *host, void *plugin_state, censor *self) {
    (void)host;
    (void)plugin_state;
    free(self);
}

static int32_t censor_configure(const ferrule_host *host, censor *self, const char *option, size_t option_len,
                                const char *value, size_t value_len) {
    static const char head[] = "unknown option '";
    char *message;
    size_t len;
    if (option_len == 4 && memcmp(option, "mask", 4) == 0) {
        if (value_len != 1 || (unsigned char)value[0] > 0x7F) {
            return ferrule_fail(host, "mask must be one ASCII character");
        }
        self->mask = value[0];
        return FERRULE_OK;
    }
    /* "unknown option '<name>'": the name is length-delimited (it may be long
     * or hold a NUL), so build the message by length. set_error copies it. */
    len = sizeof head - 1 + option_len + 1;
    message = (char *)malloc(len);
    if (message == NULL) {
        return ferrule_fail(host, "unknown option");
    }
    memcpy(message, head, sizeof head - 1);
    memcpy(message + sizeof head - 1, option, option_len);
    message[len - 1] = '\'';
    host->set_error(host, message, len);
    free(message);
    return FERRULE_ERROR;
}

/* Mask every banned word of text into out (a copy of text, as long: a word is
 * ASCII letters, so masking keeps the length). word is scratch of at least
 * text_len + 1 bytes. Counts the masked words in *censored. */
static int32_t censor_words(pipeline_dictionary_client *dictionary, char mask, const char *text, size_t text_len,
                            char *out, char *word, uint32_t *censored, ferrule_bytes *error) {
    size_t i = 0;
    while (i < text_len) {
        size_t start, n;
        bool banned = false;
        int32_t status;
        if (!is_letter((unsigned char)text[i])) {
            i++;
            continue;
        }
        start = i;
        while (i < text_len && is_letter((unsigned char)text[i])) {
            word[i - start] = (char)(text[i] | 0x20); /* ASCII lowercase */
            i++;
        }
        n = i - start;
        word[n] = '\0'; /* the client passes a str as a NUL-terminated string */
        status = pipeline_dictionary_contains(dictionary, "banned", word, &banned, error);
        if (status != FERRULE_OK) {
            return status;
        }
        if (banned) {
            memset(out + start, mask, n);
            (*censored)++;
        }
    }
    return FERRULE_OK;
}

static int32_t censor_apply(const ferrule_host *host, censor *self, const char *text, size_t text_len,
                            ferrule_bytes *result) {
    pipeline_dictionary_client dictionary;
    ferrule_bytes error; /* the Dictionary's message on failure: ours to release */
    uint32_t censored = 0;
    char *out, *word;
    char line[64];
    int32_t status;

    if (!pipeline_dictionary_query(host, &dictionary)) {
        return ferrule_fail(host, "the host provides no " PIPELINE_DICTIONARY_ID "/1");
    }
    /* out becomes the result: allocated with host->alloc, the host frees it
     * with host->free after copying. word is our own scratch, freed here. */
    out = (char *)host->alloc(text_len);
    word = (char *)malloc(text_len + 1);
    if (out == NULL || word == NULL) {
        if (out != NULL) {
            host->free(out, text_len);
        }
        free(word);
        pipeline_dictionary_release(&dictionary);
        return ferrule_fail(host, "out of memory");
    }
    memcpy(out, text, text_len);
    status = censor_words(&dictionary, self->mask, text, text_len, out, word, &censored, &error);
    free(word);
    pipeline_dictionary_release(&dictionary);
    if (status != FERRULE_OK) {
        host->free(out, text_len); /* a failing method hands over no memory */
        return pipeline_fail_with(host, &error); /* passes the message on and releases it */
    }
    snprintf(line, sizeof line, "censored %lu words", (unsigned long)censored);
    ferrule_log(host, FERRULE_LOG_INFO, line);
    result->ptr = out;
    result->len = text_len;
    result->release = host->free;
    return FERRULE_OK;
}

PIPELINE_TRANSFORM_IMPLEMENT(censor, censor, "censor", "Masks the words of the host's \"banned\" list.");

/* ------------------------------------------------------------------ Analyzer "bytes" */

/* No state: every instance is NULL (the type is never defined), so calls from
 * several threads at once are safe. */
typedef struct analyzer analyzer;

static int32_t analyzer_create(const ferrule_host *host, void *plugin_state, analyzer **self) {
    (void)host;
    (void)plugin_state;
    *self = NULL;
    return FERRULE_OK;
}

static void analyzer_destroy(const ferrule_host *host, void *plugin_state, analyzer *self) {
    (void)host;
    (void)plugin_state;
    (void)self;
}

static int32_t analyzer_stats(const ferrule_host *host, analyzer *self, const char *text, size_t text_len,
                              pipeline_stats *result) {
    uint32_t word_chars = 0; /* code points in the current word */
    size_t i;
    (void)host;
    (void)self;
    memset(result, 0, sizeof *result);
    for (i = 0; i < text_len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (starts_code_point(c)) {
            result->chars++; /* every code point, whitespace included */
        }
        if (c == '\n') {
            result->lines++;
        }
        if (is_space(c)) {
            word_chars = 0;
            continue;
        }
        if (i == 0 || is_space((unsigned char)text[i - 1])) {
            result->words++;
        }
        if (starts_code_point(c)) {
            word_chars++;
            if (word_chars > result->longest_word) {
                result->longest_word = word_chars;
            }
        }
    }
    if (text_len > 0 && text[text_len - 1] != '\n') {
        result->lines++; /* a last line without its newline */
    }
    return FERRULE_OK;
}

static int32_t analyzer_histogram(const ferrule_host *host, analyzer *self, const uint8_t *text, size_t text_len,
                                  uint32_t *counts, size_t counts_len) {
    size_t i;
    (void)self;
    if (counts_len != 256) {
        char message[80];
        snprintf(message, sizeof message, "counts must have 256 elements, got %lu", (unsigned long)counts_len);
        return ferrule_fail(host, message);
    }
    /* counts is the caller's own memory, borrowed for this call. */
    for (i = 0; i < text_len; i++) {
        counts[text[i]]++;
    }
    return FERRULE_OK;
}

PIPELINE_ANALYZER_IMPLEMENT(analyzer, analyzer, "bytes", "Counts words, lines and code points, byte by byte.");

/* ------------------------------------------------------------------ the descriptor */

static const ferrule_interface *const interfaces[] = {
    &censor_interface,
    &analyzer_interface,
};

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.example.textkit_c",
    "Textkit (C)",
    "0.1.0",
    "The pipeline example's C plugin: Transform \"censor\" and Analyzer \"bytes\".",
    "MIT",
    0,    /* no plain functions */
    0,
    NULL,
    NULL, /* no init: plugin state is NULL */
    NULL, /* no shutdown */
    sizeof interfaces / sizeof interfaces[0],
    0,
    interfaces,
};

FERRULE_ENTRY { return &descriptor; }
