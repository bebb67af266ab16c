"""The generated C header compiles cleanly as C99, C11, C++11 and C++17 with
warnings as errors, with every implementer macro and caller function of the
test declarations expanded: by the C test plugin (Counter, Shapes
implemented; Store, Store2, Counter called) and by the source below (Store,
Store2 implemented; Shapes called)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from ferrule import idl
from ferrule._codegen import c as _gen_c
from tests import iface_api as api

from .conftest import CC, INCLUDE, ROOT, run

CXX = "c++"
STANDARDS = [(CC, "c99"), (CC, "c11"), (CXX, "c++11"), (CXX, "c++17")]

SPECS = [idl.spec(c) for c in (api.Counter, api.Shapes, api.Store, api.Store2)]

# Implements Store and Store2 (one shared map of one key), calls every Shapes
# method a client can call. Valid C99 and C++.
USE_SOURCE = r"""
#include "iface_api.h"

typedef struct kv { char value[16]; size_t len; bool set; } kv;

static int32_t kv_create(const ferrule_host *host, void *plugin_state, kv **self) {
    (void)plugin_state;
    *self = (kv *)host->alloc(sizeof(kv));
    if (*self == NULL) {
        return ferrule_fail(host, "out of memory");
    }
    (*self)->set = false;
    return FERRULE_OK;
}
static void kv_destroy(const ferrule_host *host, void *plugin_state, kv *self) {
    (void)plugin_state;
    host->free(self, sizeof(kv));
}
static int32_t kv_get(const ferrule_host *host, kv *self, const char *key, size_t key_len, ferrule_bytes *result) {
    (void)key;
    (void)key_len;
    if (!self->set) {
        return ferrule_fail(host, "absent");
    }
    return tapi_bytes_copy(host, result, self->value, self->len);
}
static int32_t kv_put(const ferrule_host *host, kv *self, const char *key, size_t key_len, const char *value,
                      size_t value_len) {
    (void)key;
    (void)key_len;
    if (value_len > sizeof(self->value)) {
        return ferrule_fail(host, "too long");
    }
    memcpy(self->value, value, value_len);
    self->len = value_len;
    self->set = true;
    return FERRULE_OK;
}
TAPI_STORE_IMPLEMENT(kv, kv, "kv", NULL);

static int32_t kv2_create(const ferrule_host *host, void *plugin_state, kv **self) {
    return kv_create(host, plugin_state, self);
}
static void kv2_destroy(const ferrule_host *host, void *plugin_state, kv *self) {
    kv_destroy(host, plugin_state, self);
}
static int32_t kv2_get(const ferrule_host *host, kv *self, const char *key, size_t key_len, ferrule_bytes *result) {
    return kv_get(host, self, key, key_len, result);
}
static int32_t kv2_put(const ferrule_host *host, kv *self, const char *key, size_t key_len, const char *value,
                       size_t value_len) {
    return kv_put(host, self, key, key_len, value, value_len);
}
static int32_t kv2_count(const ferrule_host *host, kv *self, uint32_t *result) {
    (void)host;
    *result = self->set ? 1 : 0;
    return FERRULE_OK;
}
TAPI_STORE2_IMPLEMENT(kv2, kv, "kv2", "revision 2");

static int32_t use_shapes(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    tapi_shapes_client shapes;
    ferrule_bytes error, text;
    tapi_rect r, grown;
    tapi_token token;
    uint64_t area;
    double value, values[2] = {1.0, 2.0};
    int32_t target[2];
    int32_t status;
    (void)state;
    (void)args;
    memset(&r, 0, sizeof(r));
    if (!tapi_shapes_query(host, &shapes)) {
        return ferrule_fail(host, "no shapes");
    }
    status = tapi_shapes_area(&shapes, r, &area, &error);
    if (status == FERRULE_OK) status = tapi_shapes_grow(&shapes, r, 2, &grown, &error);
    if (status == FERRULE_OK) status = tapi_shapes_mix(&shapes, true, -1, 2, 0.5f, 0.25, 10, &value, NULL);
    if (status == FERRULE_OK) status = tapi_shapes_sum(&shapes, values, 2, &value, &error);
    if (status == FERRULE_OK) status = tapi_shapes_fill(&shapes, target, 2, 7, &error);
    if (status == FERRULE_OK) status = tapi_shapes_token(&shapes, "label", &token, &error);
    if (status == FERRULE_OK) status = tapi_shapes_label(&shapes, token, &text, &error);
    if (status == FERRULE_OK) {
        tapi_bytes_release(&text);
        status = tapi_shapes_echo(&shapes, "abc", 3, NULL, &error);
    }
    tapi_shapes_release(&shapes);
    if (status != FERRULE_OK) {
        return tapi_fail_with(host, &error);
    }
    ret->u64 = area + grown.area_hint + (uint64_t)value;
    return FERRULE_OK;
}

static const ferrule_function use = FERRULE_FUNCTION("use_shapes", "() -> u64", NULL, 0, use_shapes);
static const ferrule_function *const functions[] = {&use};
static const ferrule_interface *const interfaces[] = {&kv_interface, &kv2_interface};
static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.test.use", "use", "1", NULL, NULL, 1, 0, functions, NULL, NULL,
    2, 0, interfaces,
};
FERRULE_ENTRY { return &descriptor; }
"""


def compile_c(source: Path, include: Path, compiler: str, std: str) -> None:
    lang = ["-x", "c++"] if compiler == CXX else []
    run([compiler, *lang, f"-std={std}", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{include}",
         f"-I{INCLUDE}", "-fsyntax-only", str(source)])


@pytest.fixture(scope="module")
def header_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen_c")
    (out / "iface_api.h").write_text(_gen_c.render(SPECS, "tests.iface_api", "tapi"))
    (out / "use.c").write_text(USE_SOURCE)
    return out


@pytest.mark.parametrize(("compiler", "std"), STANDARDS)
def test_header_alone_compiles(header_dir: Path, tmp_path: Path, compiler: str, std: str) -> None:
    source = tmp_path / "alone.c"
    source.write_text('#include "iface_api.h"\n#include "iface_api.h"\n')
    compile_c(source, header_dir, compiler, std)


@pytest.mark.parametrize(("compiler", "std"), STANDARDS)
def test_test_plugin_compiles(header_dir: Path, compiler: str, std: str) -> None:
    compile_c(ROOT / "tests" / "plugins" / "c" / "ifaces.c", header_dir, compiler, std)


@pytest.mark.parametrize(("compiler", "std"), STANDARDS)
def test_store_implementation_and_shapes_client_compile(header_dir: Path, compiler: str, std: str) -> None:
    compile_c(header_dir / "use.c", header_dir, compiler, std)


def test_render_is_deterministic() -> None:
    first = _gen_c.render(SPECS, "tests.iface_api", "tapi")
    assert first == _gen_c.render(SPECS, "tests.iface_api", "tapi")
    assert first.startswith("/* Generated by `ferrule generate` from tests.iface_api; do not edit.")
    assert "#define TAPI_SHAPES_FINGERPRINT UINT64_C(0x4a36639965b541c7)" in first
    assert "#define TAPI_STORE2_REVISION 2" in first


def test_names() -> None:
    assert [_gen_c.snake(n) for n in ("Store2", "ImageFilter", "HTTPServer", "counter")] == [
        "store2", "image_filter", "http_server", "counter"]
    with pytest.raises(ValueError, match="lowercase C identifier"):
        _gen_c.render(SPECS, "tests.iface_api", "Tapi")
    with pytest.raises(ValueError, match="both become"):
        _gen_c.render([SPECS[0], SPECS[0]], "tests.iface_api", "tapi")


@idl.interface("org.ferrule.test.awkward", revision=1)
class Awkward(Protocol):
    """Names that clash with C keywords and with generated names."""

    def create(self, int: idl.i32, key: str, key_len: idl.u64) -> idl.i32:
        """A method named like the lifecycle function."""

    def release(self, error: bytes, result: idl.buf[idl.u8], default: bool) -> bool:
        """A method named like the client's release, parameters like its own."""


AWKWARD_SOURCE = r"""
#include "awkward.h"

static int32_t awk_create(const ferrule_host *host, void *plugin_state, int **self) {
    (void)host;
    (void)plugin_state;
    *self = NULL;
    return FERRULE_OK;
}
static void awk_destroy(const ferrule_host *host, void *plugin_state, int *self) {
    (void)host;
    (void)plugin_state;
    (void)self;
}
static int32_t awk_create_(const ferrule_host *host, int *self, int32_t int_, const char *key, size_t key_len,
                           uint64_t key_len_, int32_t *result) {
    (void)host;
    (void)self;
    (void)key;
    *result = int_ + (int32_t)key_len + (int32_t)key_len_;
    return FERRULE_OK;
}
static int32_t awk_release_(const ferrule_host *host, int *self, const uint8_t *error_, size_t error__len,
                            const uint8_t *result_, size_t result__len, bool default_, bool *result) {
    (void)host;
    (void)self;
    (void)error_;
    (void)result_;
    *result = default_ && error__len == result__len;
    return FERRULE_OK;
}
AWK_AWKWARD_IMPLEMENT(awk, int, "awk", NULL);

static int32_t use(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    awk_awkward_client client;
    int32_t n = 0;
    bool b = false;
    int32_t status;
    (void)state;
    (void)args;
    if (!awk_awkward_query(host, &client)) {
        return ferrule_fail(host, "absent");
    }
    status = awk_awkward_create_(&client, 1, "key", 2, &n, NULL);
    if (status == FERRULE_OK) status = awk_awkward_release_(&client, "x", 1, NULL, 0, true, &b, NULL);
    awk_awkward_release(&client);
    ret->i64 = n + b;
    return status;
}
static const ferrule_function f = FERRULE_FUNCTION("use", "() -> i64", NULL, 0, use);
static const ferrule_function *const functions[] = {&f};
static const ferrule_interface *const interfaces[] = {&awk_interface};
static const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD, "org.ferrule.test.awk", "awk", "1", NULL, NULL, 1, 0, functions, NULL, NULL,
    1, 0, interfaces,
};
FERRULE_ENTRY { return &descriptor; }
"""


@pytest.mark.parametrize(("compiler", "std"), [STANDARDS[0], STANDARDS[3]])
def test_clashing_names_are_renamed(tmp_path: Path, compiler: str, std: str) -> None:
    (tmp_path / "awkward.h").write_text(_gen_c.render([idl.spec(Awkward)], "tests.test_gen_c", "awk"))
    source = tmp_path / "awkward.c"
    source.write_text(AWKWARD_SOURCE)
    compile_c(source, tmp_path, compiler, std)
