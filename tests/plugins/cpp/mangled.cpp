// A C++ plugin whose entry point lost its C linkage: it is written by hand
// instead of with FERRULE_ENTRY, so the compiler gives it a mangled name that
// no host looks up. -DIN_NAMESPACE puts it in a namespace as well; -DHIDDEN
// leaves out FERRULE_EXPORT, so -fvisibility=hidden keeps it from the
// dynamic symbol table.
#include "ferrule.h"

static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.tests.mangled", "Mangled", "0.1.0", nullptr, nullptr,
    0, 0, nullptr, nullptr, nullptr, 0, 0, nullptr,
};

#ifdef HIDDEN
#define ENTRY_EXPORT
#else
#define ENTRY_EXPORT FERRULE_EXPORT
#endif

#ifdef IN_NAMESPACE
namespace myplugin {
#endif

ENTRY_EXPORT const ferrule_plugin *ferrule_entry_v1() { return &descriptor; }

#ifdef IN_NAMESPACE
}  // namespace myplugin
#endif
