/* JSON output for tests/c_host/host.c: text as a JSON string, bytes as hex. */
#ifndef C_HOST_JSON_H
#define C_HOST_JSON_H

#include <stdio.h>

/* len bytes of UTF-8 text as a JSON string (controls and NUL escaped). */
static void json_text(const char *text, size_t len) {
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

/* Bytes as a JSON string of hex digits. */
static void json_hex(const char *data, size_t len) {
    putchar('"');
    for (size_t i = 0; i < len; i++) printf("%02x", (unsigned char)data[i]);
    putchar('"');
}

#endif
