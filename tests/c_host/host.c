/* A C program hosting the plugin binaries the Python demo loads, through
 * libferrule_host (host/capi): the Rust greeter, the C calculator, and the
 * test plugin hostile.c for bytes and f32. One JSON object per line, which
 * tests/test_c_host.py compares with what the Python host does.
 *
 *     host GREETER CALC HOSTILE [NOT_A_PLUGIN ...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferrule_host.h"
#include "json.h"

/* ---------------------------------------------------------------- output */

static void print_error(const char *what, ferrule_host_code code, ferrule_host_error *err) {
    size_t len = 0;
    const char *message = ferrule_host_error_message(err, &len);
    printf("{\"case\": ");
    json_text(what, strlen(what));
    printf(", \"error\": \"%s\", \"message\": ", ferrule_host_code_name(code));
    json_text(message, len);
    const char *own = ferrule_host_error_plugin_message(err, &len);
    if (own) {
        printf(", \"plugin_message\": ");
        json_text(own, len);
    }
    /* The code returned and the error's code are one. */
    printf(", \"same_code\": %s}\n", ferrule_host_error_code(err) == code ? "true" : "false");
    ferrule_host_error_free(err);
}

static void print_value(const ferrule_host_value *v) {
    switch (v->tag) {
    case FERRULE_HOST_NONE: printf("null"); break;
    case FERRULE_HOST_BOOL: printf(v->v.b ? "true" : "false"); break;
    case FERRULE_HOST_I64: printf("%lld", (long long)v->v.i64); break;
    case FERRULE_HOST_U64: printf("%llu", (unsigned long long)v->v.u64); break;
    case FERRULE_HOST_F32: printf("%.9g", (double)v->v.f32); break;
    case FERRULE_HOST_F64: printf("%.17g", v->v.f64); break;
    case FERRULE_HOST_STR: json_text(v->v.str.ptr, v->v.str.len); break;
    case FERRULE_HOST_BYTES: json_hex(v->v.str.ptr, v->v.str.len); break;
    default: printf("\"tag %u\"", (unsigned)v->tag);
    }
}

/* Call name and print {"case", "result", "tag", "owned"} or the error. */
static void call(const ferrule_host_plugin *p, const char *what, const char *name, const ferrule_host_value *args,
                 size_t n) {
    ferrule_host_value out;
    ferrule_host_error *err = NULL;
    ferrule_host_code code = ferrule_host_call_by_name(p, name, args, n, &out, &err);
    if (code != FERRULE_HOST_OK) {
        print_error(what, code, err);
        return;
    }
    printf("{\"case\": ");
    json_text(what, strlen(what));
    printf(", \"result\": ");
    print_value(&out);
    printf(", \"tag\": %u, \"owned\": %s}\n", (unsigned)out.tag, (out.flags & FERRULE_HOST_VALUE_OWNED) ? "true" : "false");
    ferrule_host_value_free(&out);
    if (out.tag != FERRULE_HOST_NONE) {
        printf("{\"case\": \"value_free did not reset the value\"}\n");
    }
}

/* ------------------------------------------------------------- callbacks */

static void on_log(void *user_data, int32_t level, const char *plugin_id, const char *target, const char *message,
                   size_t len) {
    int *count = (int *)user_data;
    ++*count;
    printf("{\"log\": %d, \"plugin\": ", (int)level);
    if (plugin_id) json_text(plugin_id, strlen(plugin_id)); else printf("null");
    printf(", \"target\": ");
    json_text(target, strlen(target));
    printf(", \"message\": ");
    json_text(message, len);
    printf("}\n");
}

/* fn(i64) -> bool: odd numbers; counts its calls in user_data. */
static ferrule_host_code odd(void *user_data, const ferrule_host_value *args, size_t n, ferrule_host_value *result,
                             ferrule_host_error **error) {
    (void)error;
    ++*(int *)user_data;
    if (n != 1 || args[0].tag != FERRULE_HOST_I64) return FERRULE_HOST_E_INVALID_ARGUMENT;
    *result = ferrule_host_bool(args[0].v.i64 % 2 == 1);
    return FERRULE_HOST_OK;
}

/* Fails at 3 with a ValueError of its own. */
static ferrule_host_code refuse_three(void *user_data, const ferrule_host_value *args, size_t n,
                                      ferrule_host_value *result, ferrule_host_error **error) {
    (void)user_data; (void)n;
    if (args[0].v.i64 == 3) {
        *error = ferrule_host_error_new(FERRULE_HOST_E_VALUE, "the host refuses 3");
        return FERRULE_HOST_E_VALUE;
    }
    *result = ferrule_host_bool(true);
    return FERRULE_HOST_OK;
}

/* Returns an integer where bool is declared: the library refuses it. */
static ferrule_host_code not_a_bool(void *user_data, const ferrule_host_value *args, size_t n,
                                    ferrule_host_value *result, ferrule_host_error **error) {
    (void)user_data; (void)args; (void)n; (void)error;
    *result = ferrule_host_i64(1);
    return FERRULE_HOST_OK;
}

/* ------------------------------------------------------------------ main */

static int sizes(void) {
    struct { const char *name; size_t size; } ours[] = {
        {"ferrule_host_value", sizeof(ferrule_host_value)},
        {"ferrule_host_open_options", sizeof(ferrule_host_open_options)},
        {"ferrule_host_plugin_info", sizeof(ferrule_host_plugin_info)},
        {"ferrule_host_function_info", sizeof(ferrule_host_function_info)},
        {"ferrule_host_param_info", sizeof(ferrule_host_param_info)},
        {"ferrule_host_offer_info", sizeof(ferrule_host_offer_info)},
    };
    printf("{\"version\": \"%s\", \"sizes\": {", ferrule_host_version());
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
        printf("%s\"%s\": [%zu, %zu]", i ? ", " : "", ours[i].name, ours[i].size, ferrule_host_struct_size(ours[i].name));
    }
    printf("}, \"unknown_size\": %zu, \"codes\": {", ferrule_host_struct_size("ferrule_host_nothing"));
    int first = 1;
    for (int code = -1; code < 128; code++) {
        const char *name = ferrule_host_code_name(code);
        if (name) {
            printf("%s\"%s\": %d", first ? "" : ", ", name, code);
            first = 0;
        }
    }
    printf("}}\n");
    return 0;
}

static void describe(const ferrule_host_plugin *p, const char *what) {
    ferrule_host_plugin_info info = {sizeof info, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0};
    ferrule_host_error *err = NULL;
    ferrule_host_code code = ferrule_host_get_plugin_info(p, &info, &err);
    if (code != FERRULE_HOST_OK) {
        print_error(what, code, err);
        return;
    }
    printf("{\"case\": \"%s\", \"id\": \"%s\", \"name\": \"%s\", \"version\": \"%s\", \"abi\": [%u, %u], "
           "\"offers\": %zu, \"path\": ", what, info.id, info.name, info.version, info.abi_major, info.abi_minor,
           info.offer_count);
    json_text(info.path, strlen(info.path));
    printf(", \"functions\": [");
    for (size_t i = 0; i < info.function_count; i++) {
        ferrule_host_function_info f;
        memset(&f, 0, sizeof f);
        f.struct_size = sizeof f;
        if (ferrule_host_get_function_info(p, i, &f, NULL) != FERRULE_HOST_OK) {
            printf("\"function_info failed\"");
            continue;
        }
        printf("%s{\"name\": \"%s\", \"signature\": ", i ? ", " : "", f.name);
        json_text(f.signature, strlen(f.signature));
        printf(", \"doc\": ");
        json_text(f.doc, strlen(f.doc));
        printf(", \"flags\": %u, \"result_tag\": %u, \"params\": [", (unsigned)f.flags, (unsigned)f.result_tag);
        for (size_t k = 0; k < f.param_count; k++) {
            ferrule_host_param_info a;
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            if (ferrule_host_get_param_info(p, i, k, &a, NULL) != FERRULE_HOST_OK) continue;
            printf("%s[\"%s\", \"%s\", %u, %u]", k ? ", " : "", a.name, a.type, (unsigned)a.tag, (unsigned)a.scalar);
        }
        printf("]}");
    }
    printf("]}\n");
}

static ferrule_host_plugin *open_or_report(const char *what, const char *path, const ferrule_host_open_options *o) {
    ferrule_host_plugin *p = NULL;
    ferrule_host_error *err = NULL;
    ferrule_host_code code = ferrule_host_open(path, o, &p, &err);
    if (code != FERRULE_HOST_OK) {
        print_error(what, code, err);
        if (p != NULL) printf("{\"case\": \"a failed open left a handle\"}\n");
        return NULL;
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: host GREETER CALC HOSTILE [NOT_A_PLUGIN ...]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    sizes();

    int logs = 0;
    ferrule_host_error *err = NULL;
    if (ferrule_host_set_log_sink(on_log, &logs, 2 /* FERRULE_LOG_INFO */, &err) != FERRULE_HOST_OK) {
        print_error("set_log_sink", ferrule_host_error_code(err), err);
        return 1;
    }

    /* The greeter: integers, text, floats, buffers, host functions, errors. */
    ferrule_host_open_options options;
    memset(&options, 0, sizeof options);
    options.struct_size = sizeof options;
    options.config = "{\"lang\": \"en\"}";
    ferrule_host_plugin *greeter = open_or_report("open greeter", argv[1], &options);
    if (!greeter) return 1;
    describe(greeter, "greeter info");

    size_t add = 0;
    if (ferrule_host_find_function(greeter, "add", &add, &err) != FERRULE_HOST_OK) {
        print_error("find add", ferrule_host_error_code(err), err);
        return 1;
    }
    ferrule_host_value two_three[2] = {ferrule_host_i64(2), ferrule_host_i64(3)}, out;
    if (ferrule_host_call(greeter, add, two_three, 2, &out, NULL) == FERRULE_HOST_OK) {
        printf("{\"case\": \"greeter.add(2, 3) by index\", \"result\": %lld}\n", (long long)out.v.i64);
    }
    ferrule_host_value a1[] = {ferrule_host_str("Ada")};
    call(greeter, "greeter.greet('Ada')", "greet", a1, 1);
    ferrule_host_value a2[] = {ferrule_host_f64(1.0), ferrule_host_f64(8.0)};
    call(greeter, "greeter.divide(1.0, 8.0)", "divide", a2, 2);
    ferrule_host_value a3[] = {ferrule_host_f64(1.0), ferrule_host_f64(0.0)};
    call(greeter, "greeter.divide(1.0, 0.0)", "divide", a3, 2);
    ferrule_host_value a4[] = {ferrule_host_i64(1), ferrule_host_str("two")};
    call(greeter, "greeter.add(1, 'two')", "add", a4, 2);
    call(greeter, "greeter.add(1)", "add", a4, 1);
    ferrule_host_value a5[] = {ferrule_host_i64(1), ferrule_host_f64(2.5)};
    call(greeter, "greeter.add(1, 2.5)", "add", a5, 2);
    ferrule_host_value a6[] = {ferrule_host_str("ferrule")};
    call(greeter, "greeter.shout('ferrule')", "shout", a6, 1);

    double values[3] = {1.0, 2.0, 6.0};
    ferrule_host_value a7[] = {ferrule_host_buf(FERRULE_HOST_TYPE_F64, values, 3)};
    call(greeter, "greeter.mean([1.0, 2.0, 6.0])", "mean", a7, 1);
    ferrule_host_value a8[] = {ferrule_host_buf(FERRULE_HOST_TYPE_F64, values, 0)};
    call(greeter, "greeter.mean([])", "mean", a8, 1);
    ferrule_host_value a9[] = {ferrule_host_mutbuf(FERRULE_HOST_TYPE_F64, values, 3), ferrule_host_f64(10.0)};
    call(greeter, "greeter.scale(values, 10.0)", "scale", a9, 2);
    printf("{\"case\": \"values after scale\", \"result\": [%.17g, %.17g, %.17g]}\n", values[0], values[1], values[2]);
    ferrule_host_value a10[] = {ferrule_host_buf(FERRULE_HOST_TYPE_F64, values, 3), ferrule_host_f64(10.0)};
    call(greeter, "greeter.scale(read-only values, 10.0)", "scale", a10, 2);
    float singles[2] = {1.0f, 2.0f};
    ferrule_host_value a11[] = {ferrule_host_buf(FERRULE_HOST_TYPE_F32, singles, 2)};
    call(greeter, "greeter.mean(f32 values)", "mean", a11, 1);

    int calls = 0;
    ferrule_host_value a12[] = {ferrule_host_fn(odd, &calls), ferrule_host_i64(10)};
    call(greeter, "greeter.count_if(odd, 10)", "count_if", a12, 2);
    printf("{\"case\": \"odd was called\", \"result\": %d}\n", calls);
    ferrule_host_value a13[] = {ferrule_host_fn(refuse_three, NULL), ferrule_host_i64(10)};
    call(greeter, "greeter.count_if(refuse_three, 10)", "count_if", a13, 2);
    ferrule_host_value a14[] = {ferrule_host_fn(not_a_bool, NULL), ferrule_host_i64(10)};
    call(greeter, "greeter.count_if(not_a_bool, 10)", "count_if", a14, 2);
    call(greeter, "greeter.nope()", "nope", NULL, 0);

    /* Misuse of the C API: codes of its own. */
    call(NULL, "NULL plugin", "add", two_three, 2);
    call(greeter, "add with NULL args", "add", NULL, 2);
    ferrule_host_value bad_tag = ferrule_host_i64(1);
    bad_tag.tag = 99;
    ferrule_host_value a15[] = {ferrule_host_i64(1), bad_tag};
    call(greeter, "add with tag 99", "add", a15, 2);
    ferrule_host_plugin_info short_info;
    memset(&short_info, 0, sizeof short_info);
    short_info.struct_size = 4;
    ferrule_host_code code = ferrule_host_get_plugin_info(greeter, &short_info, &err);
    print_error("plugin_info with struct_size 4", code, err);
    ferrule_host_function_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    err = NULL;
    code = ferrule_host_get_function_info(greeter, 99, &fi, &err);
    print_error("function_info 99", code, err);

    err = NULL;
    if (ferrule_host_close(greeter, &err) != FERRULE_HOST_OK) print_error("close greeter", ferrule_host_error_code(err), err);
    call(greeter, "greeter.add(2, 3) after close", "add", two_three, 2);
    describe(greeter, "greeter info after close");
    ferrule_host_plugin_free(greeter);

    /* The C calculator, default options. */
    ferrule_host_plugin *calc = open_or_report("open calc", argv[2], NULL);
    if (!calc) return 1;
    describe(calc, "calc info");
    ferrule_host_value c1[] = {ferrule_host_i64(6), ferrule_host_i64(7)};
    call(calc, "calc.mul(6, 7)", "mul", c1, 2);
    ferrule_host_value c2[] = {ferrule_host_f64(3.0), ferrule_host_f64(4.0)};
    call(calc, "calc.hypot(3.0, 4.0)", "hypot", c2, 2);
    ferrule_host_value c3[] = {ferrule_host_str("stressed")};
    call(calc, "calc.reverse('stressed')", "reverse", c3, 1);
    ferrule_host_value c4[] = {ferrule_host_i64(1), ferrule_host_i64(0)};
    call(calc, "calc.checked_div(1, 0)", "checked_div", c4, 2);
    ferrule_host_value c5[] = {ferrule_host_u64(9223372036854775808ull), ferrule_host_i64(1)};
    call(calc, "calc.mul(9223372036854775808, 1)", "mul", c5, 2);
    ferrule_host_value c6[] = {ferrule_host_str("a\xc3\xa9" "b")};
    call(calc, "calc.reverse('a\\u00e9b')", "reverse", c6, 1);
    ferrule_host_value c7[] = {ferrule_host_bytes("a\0b", 3)};
    c7[0].tag = FERRULE_HOST_STR;
    call(calc, "calc.reverse('a\\u0000b')", "reverse", c7, 1);
    call(calc, "calc.calls()", "calls", NULL, 0);
    ferrule_host_plugin_free(calc); /* not closed: free runs the shutdown */

    /* Bytes, f32 and bool, from the test plugin hostile.c. */
    ferrule_host_plugin *hostile = open_or_report("open hostile", argv[3], NULL);
    if (!hostile) return 1;
    const unsigned char raw[3] = {0x00, 0xff, 0x10};
    ferrule_host_value h1[] = {ferrule_host_bytes(raw, 3)};
    call(hostile, "hostile.reverse_bytes(b'\\x00\\xff\\x10')", "reverse_bytes", h1, 1);
    ferrule_host_value h2[] = {ferrule_host_f32(3.0f)};
    call(hostile, "hostile.halve(3.0)", "halve", h2, 1);
    ferrule_host_value h3[] = {ferrule_host_f64(1e39)};
    call(hostile, "hostile.halve(1e39)", "halve", h3, 1);
    ferrule_host_value h4[] = {ferrule_host_bool(true)};
    call(hostile, "hostile.negate(True)", "negate", h4, 1);
    ferrule_host_value h5[] = {ferrule_host_str("no way")};
    call(hostile, "hostile.fail('no way')", "fail", h5, 1);
    call(hostile, "hostile.int_as_str()", "int_as_str", NULL, 0);
    int32_t ints[3] = {1, -2, 3};
    ferrule_host_value h6[] = {ferrule_host_mutbuf(FERRULE_HOST_TYPE_I32, ints, 3), ferrule_host_i64(-3)};
    call(hostile, "hostile.scale(ints, -3)", "scale", h6, 2);
    printf("{\"case\": \"ints after scale\", \"result\": [%d, %d, %d]}\n", ints[0], ints[1], ints[2]);
    ferrule_host_value h7[] = {ferrule_host_mutbuf(FERRULE_HOST_TYPE_F64, values, 3), ferrule_host_i64(2)};
    call(hostile, "hostile.scale(f64 values, 2)", "scale", h7, 2);
    ferrule_host_plugin_free(hostile);

    /* Files that are no plugin. */
    for (int i = 4; i < argc; i++) {
        char what[4096];
        snprintf(what, sizeof what, "load %s", argv[i]);
        ferrule_host_plugin *p = open_or_report(what, argv[i], NULL);
        if (p) {
            printf("{\"case\": \"%s\", \"result\": \"loaded\"}\n", what);
            ferrule_host_plugin_free(p);
        }
    }
    err = NULL;
    code = ferrule_host_open(NULL, NULL, &greeter, &err);
    print_error("open NULL", code, err);

    if (ferrule_host_set_log_sink(NULL, NULL, 2, NULL) != FERRULE_HOST_OK) return 1;
    printf("{\"done\": true, \"logs\": %d}\n", logs);
    return 0;
}
