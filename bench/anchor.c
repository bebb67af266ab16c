/* The same work as the plugins' add(), exported plainly for ctypes and cffi. */
#include <stdint.h>

int64_t anchor_add(int64_t a, int64_t b) { return a + b; }
