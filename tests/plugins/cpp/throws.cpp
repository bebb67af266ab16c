// C++ exceptions at the ABI boundary: one function lets an exception escape
// (std::terminate aborts the process), the others go through ferrule::guard
// and ferrule::guard_cleanup, each with a different kind of exception.
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "ferrule.h"

namespace {

// config "throw in shutdown": shutdown throws; "throw long in shutdown": with
// a message longer than a log line, made of 3-byte UTF-8 characters.
struct State {
    std::string shutdown_message;
};

int32_t init(const ferrule_host *host, const char *config, size_t config_len, void **state) {
    return ferrule::guard(host, [&] {
        std::string text(config, config_len);
        if (text == "throw in init") {
            throw std::invalid_argument("config 'throw in init' is refused");
        }
        std::string message;
        if (text == "throw in shutdown") {
            message = "flushing failed in shutdown";
        } else if (text == "throw long in shutdown") {
            for (int i = 0; i < 400; i++) message += "\xe2\x82\xac";  // U+20AC
        }
        *state = new State{message};
    });
}

void shutdown(const ferrule_host *host, void *state) {
    ferrule::guard_cleanup(host, [&] {
        std::unique_ptr<State> s(static_cast<State *>(state));
        ferrule_log(host, FERRULE_LOG_INFO, "throws: shutdown");
        if (!s->shutdown_message.empty()) {
            throw std::runtime_error(s->shutdown_message);
        }
    });
}

// No guard: the exception leaves the plugin and meets the C host.
int32_t unguarded(const ferrule_host *, void *, const ferrule_value *, ferrule_value *) {
    throw std::runtime_error("escaped without a guard");
}

// "(kind: str) -> i64": throw what kind names, or return 7.
int32_t guarded(const ferrule_host *host, void *, const ferrule_value *args, ferrule_value *ret) {
    return ferrule::guard(host, [&]() -> int32_t {
        std::string kind(static_cast<const char *>(args[0].bytes.ptr), args[0].bytes.len);
        if (kind == "std") throw std::out_of_range("index 9 is out of range (size 3)");
        if (kind == "bad_alloc") throw std::bad_alloc();
        if (kind == "int") throw 42;
        if (kind == "empty") throw std::runtime_error("");
        if (kind == "status") return ferrule_fail(host, "failed by status, no exception");
        ret->i64 = 7;
        return FERRULE_OK;
    });
}

const ferrule_function f_unguarded = FERRULE_FUNCTION("unguarded", "()", nullptr, 0, unguarded);
const ferrule_function f_guarded = FERRULE_FUNCTION("guarded", "(kind: str) -> i64", nullptr, 0, guarded);
const ferrule_function *const functions[] = {&f_unguarded, &f_guarded};

const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.tests.throws", "Throws", "0.1.0", nullptr, nullptr,
    2, 0, functions, init, shutdown, 0, 0, nullptr,
};

}  // namespace

FERRULE_ENTRY { return &descriptor; }
