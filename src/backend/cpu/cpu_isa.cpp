#include "backend/cpu/cpu_isa.h"

namespace dm {

bool cpu_supports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::generic: return true;
    case CpuIsa::avx2:
#if defined(__x86_64__) || defined(__i386__)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
#else
      return false;
#endif
  }
  return false;
}

CpuIsa best_cpu_isa() { return cpu_supports(CpuIsa::avx2) ? CpuIsa::avx2 : CpuIsa::generic; }

std::string cpu_isa_name(CpuIsa isa) {
  return isa == CpuIsa::avx2 ? "avx2+fma+f16c" : "generic";
}

}  // namespace dm
