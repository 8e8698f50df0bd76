#include "proxy/core/error.h"

const char *sp_strerror(int err) {
  switch (err) {
  case SP_OK:
    return "success";
#define SP_ERROR_MSG(name, msg)                                                        \
  case SP_E_##name:                                                                    \
    return msg;
    SP_ERROR_MAP(SP_ERROR_MSG)
#undef SP_ERROR_MSG
  }
  return "unknown error";
}
