/* libferrule_dep.so: the dependency the MISSING_DEP fixture links against. */
#include <stdint.h>

__attribute__((visibility("default"))) int64_t ferrule_dep_value(void) { return 0; }
