/* Prints the size, alignment and field offsets of every ABI struct as the C
 * compiler lays them out, in the same JSON shape as the Rust probe. */
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>

#include "ferrule.h"

#define FIELD(type, field, last) printf("\"%s\": %zu%s", #field, offsetof(type, field), (last) ? "" : ", ")
#define OPEN(type) printf("\"%s\": {\"size\": %zu, \"align\": %zu, \"fields\": {", #type, sizeof(type), alignof(type))
#define CLOSE(last) printf("}}%s", (last) ? "" : ", ")
#define CONST(name, last) printf("\"%s\": %llu%s", #name, (unsigned long long)(name), (last) ? "" : ", ")

int main(void) {
    printf("{\"structs\": {");
    OPEN(ferrule_bytes);
    FIELD(ferrule_bytes, ptr, 0); FIELD(ferrule_bytes, len, 0); FIELD(ferrule_bytes, release, 1);
    CLOSE(0);
    OPEN(ferrule_buf);
    FIELD(ferrule_buf, ptr, 0); FIELD(ferrule_buf, len, 1);
    CLOSE(0);
    OPEN(ferrule_value);
    FIELD(ferrule_value, i64, 0); FIELD(ferrule_value, u64, 0); FIELD(ferrule_value, f64, 0);
    FIELD(ferrule_value, f32, 0); FIELD(ferrule_value, bytes, 0);
    FIELD(ferrule_value, buf, 0); FIELD(ferrule_value, func, 1);
    CLOSE(0);
    OPEN(ferrule_host);
    FIELD(ferrule_host, struct_size, 0); FIELD(ferrule_host, abi_major, 0); FIELD(ferrule_host, abi_minor, 0);
    FIELD(ferrule_host, host_data, 0); FIELD(ferrule_host, log, 0); FIELD(ferrule_host, set_error, 0);
    FIELD(ferrule_host, alloc, 0); FIELD(ferrule_host, free, 0);
    FIELD(ferrule_host, invoke, 0); FIELD(ferrule_host, query, 0); FIELD(ferrule_host, call, 0);
    FIELD(ferrule_host, release, 1);
    CLOSE(0);
    OPEN(ferrule_function);
    FIELD(ferrule_function, struct_size, 0); FIELD(ferrule_function, flags, 0); FIELD(ferrule_function, name, 0);
    FIELD(ferrule_function, signature, 0); FIELD(ferrule_function, doc, 0); FIELD(ferrule_function, call, 1);
    CLOSE(0);
    OPEN(ferrule_plugin);
    FIELD(ferrule_plugin, magic, 0); FIELD(ferrule_plugin, struct_size, 0); FIELD(ferrule_plugin, abi_major, 0);
    FIELD(ferrule_plugin, abi_minor, 0); FIELD(ferrule_plugin, id, 0); FIELD(ferrule_plugin, name, 0);
    FIELD(ferrule_plugin, version, 0); FIELD(ferrule_plugin, description, 0); FIELD(ferrule_plugin, license, 0);
    FIELD(ferrule_plugin, function_count, 0); FIELD(ferrule_plugin, flags, 0); FIELD(ferrule_plugin, functions, 0);
    FIELD(ferrule_plugin, init, 0); FIELD(ferrule_plugin, shutdown, 0);
    FIELD(ferrule_plugin, interface_count, 0); FIELD(ferrule_plugin, reserved, 0);
    FIELD(ferrule_plugin, interfaces, 1);
    CLOSE(0);
    OPEN(ferrule_interface);
    FIELD(ferrule_interface, struct_size, 0); FIELD(ferrule_interface, flags, 0); FIELD(ferrule_interface, id, 0);
    FIELD(ferrule_interface, revision, 0); FIELD(ferrule_interface, method_count, 0);
    FIELD(ferrule_interface, fingerprint, 0); FIELD(ferrule_interface, layout, 0); FIELD(ferrule_interface, name, 0);
    FIELD(ferrule_interface, doc, 0); FIELD(ferrule_interface, methods, 0); FIELD(ferrule_interface, create, 0);
    FIELD(ferrule_interface, destroy, 1);
    CLOSE(1);
    printf("}, \"constants\": {");
    CONST(FERRULE_ABI_MAJOR, 0); CONST(FERRULE_ABI_MINOR, 0); CONST(FERRULE_MAGIC, 0);
    CONST(FERRULE_OK, 0); CONST(FERRULE_ERROR, 0); CONST(FERRULE_PANIC, 0);
    CONST(FERRULE_LOG_TRACE, 0); CONST(FERRULE_LOG_DEBUG, 0); CONST(FERRULE_LOG_INFO, 0);
    CONST(FERRULE_LOG_WARN, 0); CONST(FERRULE_LOG_ERROR, 0); CONST(FERRULE_FN_THREAD_SAFE, 0);
    CONST(FERRULE_FN_QUICK, 0); CONST(FERRULE_IFACE_THREAD_SAFE, 1);
    printf("}}\n");
    return 0;
}
