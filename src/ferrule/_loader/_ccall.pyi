"""Types of ferrule.Library's optional C path (_ccall.c)."""

class CCall:
    @property
    def _accelerated(self) -> bool: ...
    def _accelerate(self, address: int, kinds: bytes, needs: tuple[tuple[int, int], ...], result: int, /) -> bool: ...

def callbacks(delta: int, /) -> int: ...
def enable_vectorcall(cls: type, /) -> None: ...

T_BOOL: int
T_I8: int
T_I16: int
T_I32: int
T_I64: int
T_U8: int
T_U16: int
T_U32: int
T_U64: int
T_F32: int
T_F64: int
PK_PTR: int
PK_CONST_PTR: int
RK_VOID: int
RK_PTR: int
RK_CHAR_PTR: int
